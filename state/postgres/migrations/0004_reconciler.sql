-- The reconciler's records: full verdicts on revisions, the render each deployment was
-- last converged to, what converged instances run (for the planner), and the variables
-- generated for manifests, encrypted by the director before they reach the database.
ALTER TABLE revisions
    ADD COLUMN policy_revision text NOT NULL DEFAULT '',
    ADD COLUMN verdict_detail  jsonb,
    ADD COLUMN error           text NOT NULL DEFAULT '';

CREATE TABLE deployment_renders (
    deployment text PRIMARY KEY,
    revision   text        NOT NULL,
    digest     text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE instance_applied (
    instance_id text PRIMARY KEY,
    deployment  text        NOT NULL,
    data        jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX instance_applied_deployment ON instance_applied (deployment);

CREATE TABLE variables (
    deployment text        NOT NULL,
    name       text        NOT NULL,
    -- AES-GCM sealed value (nonce || ciphertext); the key never reaches the database.
    value      bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (deployment, name)
);
