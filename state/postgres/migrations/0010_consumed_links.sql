-- The links each deployment's jobs consume from other deployments, as its last successful
-- deploy resolved them: a copy of the provider's shared links (shared_links) taken then.
-- As BOSH's director keeps a consumer's links with the consumer, a resurrection or a
-- repair between two deploys of the consumer renders the links its other instances run,
-- not whatever the provider shared since, and still renders once the provider is gone.
-- A consumer's copy is replaced whole at each successful deploy and dropped when the
-- consumer is deleted; deleting the provider leaves it.
CREATE TABLE consumed_links (
    consumer   text        NOT NULL,
    deployment text        NOT NULL,
    name       text        NOT NULL,
    type       text        NOT NULL,
    data       jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, deployment, name)
);
