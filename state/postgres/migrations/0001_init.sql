CREATE TABLE tasks (
    id           bigserial PRIMARY KEY,
    type         text        NOT NULL,
    deployment   text        NOT NULL DEFAULT '',
    state        text        NOT NULL DEFAULT 'queued'
                 CHECK (state IN ('queued','processing','cancelling','done','error','cancelled','timeout')),
    description  text        NOT NULL DEFAULT '',
    params       jsonb,
    result       text        NOT NULL DEFAULT '',
    username     text        NOT NULL DEFAULT '',
    owner        text,
    heartbeat_at timestamptz,
    attempts     int         NOT NULL DEFAULT 0,
    event_seq    bigint      NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz
);
CREATE INDEX tasks_queued ON tasks (id) WHERE state = 'queued';
CREATE INDEX tasks_queued_deployment ON tasks (deployment, id) WHERE state = 'queued';
CREATE INDEX tasks_running ON tasks (heartbeat_at) WHERE state IN ('processing','cancelling');
CREATE INDEX tasks_deployment ON tasks (deployment, id);

CREATE TABLE task_events (
    task_id  bigint      NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq      bigint      NOT NULL,
    time     timestamptz NOT NULL DEFAULT now(),
    stage    text        NOT NULL DEFAULT '',
    task     text        NOT NULL DEFAULT '',
    tags     text[]      NOT NULL DEFAULT '{}',
    index    int         NOT NULL DEFAULT 0,
    total    int         NOT NULL DEFAULT 0,
    state    text        NOT NULL DEFAULT '',
    progress int         NOT NULL DEFAULT 0,
    error    text        NOT NULL DEFAULT '',
    PRIMARY KEY (task_id, seq)
);

-- One row per deployment whose task is processing: the deployment lock, visible to operators.
CREATE TABLE locks (
    deployment  text PRIMARY KEY,
    task_id     bigint      NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    owner       text        NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE events (
    id          bigserial PRIMARY KEY,
    time        timestamptz NOT NULL DEFAULT now(),
    username    text        NOT NULL DEFAULT '',
    action      text        NOT NULL,
    object_type text        NOT NULL,
    object_name text        NOT NULL DEFAULT '',
    deployment  text        NOT NULL DEFAULT '',
    instance    text        NOT NULL DEFAULT '',
    task_id     bigint,
    error       text        NOT NULL DEFAULT '',
    context     jsonb
);
CREATE INDEX events_deployment ON events (deployment, id);

CREATE TABLE revisions (
    sha             text PRIMARY KEY,
    author          text        NOT NULL DEFAULT '',
    message         text        NOT NULL DEFAULT '',
    received        timestamptz NOT NULL DEFAULT now(),
    verdict         text        NOT NULL CHECK (verdict IN ('accepted','rejected','failed')),
    policy_messages text[]      NOT NULL DEFAULT '{}',
    task_id         bigint
);
CREATE INDEX revisions_received ON revisions (received);

CREATE TABLE deployments (
    name       text PRIMARY KEY,
    revision   text        NOT NULL DEFAULT '',
    manifest   bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE instances (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    deployment text        NOT NULL REFERENCES deployments (name) ON DELETE CASCADE,
    grp        text        NOT NULL,
    idx        int         NOT NULL,
    az         text        NOT NULL DEFAULT '',
    state      text        NOT NULL DEFAULT 'started',
    bootstrap  boolean     NOT NULL DEFAULT false,
    vm_cid     text        NOT NULL DEFAULT '',
    ips        text[]      NOT NULL DEFAULT '{}',
    agent_id   text        NOT NULL DEFAULT '',
    disk_cid   text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (deployment, grp, idx)
);

CREATE TABLE vms (
    cid         text PRIMARY KEY,
    deployment  text        NOT NULL,
    instance_id uuid REFERENCES instances (id) ON DELETE SET NULL,
    agent_id    text        NOT NULL DEFAULT '',
    ips         text[]      NOT NULL DEFAULT '{}',
    cpi         text        NOT NULL DEFAULT '',
    stemcell    text        NOT NULL DEFAULT '',
    metadata    jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX vms_deployment ON vms (deployment);

CREATE TABLE disks (
    cid         text PRIMARY KEY,
    deployment  text        NOT NULL,
    instance_id uuid REFERENCES instances (id) ON DELETE SET NULL,
    size_mb     int         NOT NULL DEFAULT 0,
    cpi         text        NOT NULL DEFAULT '',
    active      boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX disks_deployment ON disks (deployment);

CREATE TABLE intents (
    id          bigserial PRIMARY KEY,
    task_id     bigint,
    kind        text        NOT NULL,
    deployment  text        NOT NULL,
    instance_id text        NOT NULL DEFAULT '',
    request_id  text        NOT NULL UNIQUE,
    state       text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending','done','failed')),
    cloud_cid   text        NOT NULL DEFAULT '',
    error       text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    done_at     timestamptz
);
CREATE INDEX intents_pending ON intents (id) WHERE state = 'pending';
