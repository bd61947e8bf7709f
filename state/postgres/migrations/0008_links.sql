-- Links a deployment's jobs provide with shared: true, as its last successful deploy left
-- them: jobs of other deployments consume them (consumes: {x: {from: ..., deployment: ...}}),
-- as BOSH's director serves a deployment's shared links to others. A deployment's links
-- are replaced whole at each successful deploy and dropped when it is deleted.
CREATE TABLE shared_links (
    deployment text        NOT NULL,
    name       text        NOT NULL,
    type       text        NOT NULL,
    data       jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (deployment, name)
);
