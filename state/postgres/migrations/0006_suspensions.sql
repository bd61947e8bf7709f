-- Deployments an operator suspended (bosun suspend): the reconciler plans nothing for them
-- until they are resumed. No foreign key: a suspension outlives a deployment deleted and
-- made again, as an operator's hold should.
CREATE TABLE suspensions (
    deployment   text PRIMARY KEY,
    username     text        NOT NULL DEFAULT '',
    reason       text        NOT NULL DEFAULT '',
    suspended_at timestamptz NOT NULL DEFAULT now()
);
