-- What converge last applied to each instance: the plan's fingerprint (compared by the next
-- plan) and converge's own record of the apply spec and VM request (used by operator
-- actions). Both are JSON that converge owns.
ALTER TABLE instances ADD COLUMN applied jsonb, ADD COLUMN apply_record jsonb;

-- Stemcells uploaded to each CPI, so that each is uploaded once.
CREATE TABLE stemcell_uploads (
    cpi        text        NOT NULL,
    name       text        NOT NULL,
    version    text        NOT NULL,
    cid        text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cpi, name, version)
);

-- Compiled packages by compiled-package key (package fingerprint, dependencies, stemcell).
CREATE TABLE compiled_packages (
    key        text PRIMARY KEY,
    name       text        NOT NULL,
    version    text        NOT NULL,
    stemcell   text        NOT NULL,
    blob       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
