-- chronoraft schema v1: leadership fencing, jobs, runs with attempts, workers.

-- One row: the epoch (Raft term) of the leader currently allowed to write.
CREATE TABLE leadership (
    id         smallint PRIMARY KEY CHECK (id = 1),
    epoch      bigint NOT NULL,
    node_id    text NOT NULL,
    since      timestamptz NOT NULL DEFAULT now()
);
INSERT INTO leadership (id, epoch, node_id) VALUES (1, 0, '');

-- Every successful leadership claim, for the failover timeline.
CREATE TABLE leadership_log (
    epoch      bigint PRIMARY KEY,
    node_id    text NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE jobs (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                   text NOT NULL,
    description            text NOT NULL DEFAULT '',
    schedule               text NOT NULL,
    timezone               text NOT NULL DEFAULT 'UTC',
    command                text NOT NULL,
    args                   jsonb,            -- NULL: command runs under /bin/sh -c
    env                    jsonb NOT NULL DEFAULT '{}',
    cwd                    text,
    timeout_seconds        double precision NOT NULL DEFAULT 0,
    max_retries            integer NOT NULL DEFAULT 0,
    retry_backoff_seconds  double precision NOT NULL DEFAULT 10,
    labels                 jsonb NOT NULL DEFAULT '{}',
    paused                 boolean NOT NULL DEFAULT false,
    catchup_window_seconds double precision NOT NULL DEFAULT 60,
    next_fire_at           timestamptz,
    version                integer NOT NULL DEFAULT 1,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    deleted_at             timestamptz
);
-- Names are unique among live jobs; a deleted job keeps its runs and frees its name.
CREATE UNIQUE INDEX jobs_name_live ON jobs (name) WHERE deleted_at IS NULL;
CREATE INDEX jobs_schedulable ON jobs (id) WHERE deleted_at IS NULL AND NOT paused;

CREATE TABLE runs (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id            bigint NOT NULL REFERENCES jobs (id),
    scheduled_for     timestamptz NOT NULL,
    trigger           text NOT NULL CHECK (trigger IN ('schedule', 'catchup', 'manual')),
    state             text NOT NULL CHECK (state IN ('pending', 'dispatched', 'running',
                          'succeeded', 'failed', 'timed_out', 'cancelled', 'skipped')),
    late              boolean NOT NULL DEFAULT false,
    attempt           integer NOT NULL DEFAULT 1,
    max_retries       integer NOT NULL DEFAULT 0,
    not_before        timestamptz NOT NULL DEFAULT now(),
    worker_id         text,
    epoch             bigint,
    created_at        timestamptz NOT NULL DEFAULT now(),
    dispatched_at     timestamptz,
    started_at        timestamptz,
    finished_at       timestamptz,
    exit_code         integer,
    output            text,
    output_truncated  boolean NOT NULL DEFAULT false,
    error             text,
    cancel_requested  boolean NOT NULL DEFAULT false,
    -- The invariant: one run per (job, slot), whoever tries to create it.
    CONSTRAINT runs_one_per_slot UNIQUE (job_id, scheduled_for)
);
CREATE INDEX runs_pending ON runs (not_before, id) WHERE state = 'pending';
CREATE INDEX runs_active ON runs (worker_id) WHERE state IN ('dispatched', 'running');
CREATE INDEX runs_job_recent ON runs (job_id, id DESC);
CREATE INDEX runs_state_recent ON runs (state, id DESC);
CREATE INDEX runs_scheduled ON runs (scheduled_for);

-- Each attempt of a run, so retries and re-queues leave their whole story.
CREATE TABLE run_attempts (
    run_id           bigint NOT NULL REFERENCES runs (id),
    attempt          integer NOT NULL,
    worker_id        text,
    epoch            bigint,
    state            text NOT NULL,
    dispatched_at    timestamptz,
    started_at       timestamptz,
    finished_at      timestamptz,
    exit_code        integer,
    output           text,
    output_truncated boolean NOT NULL DEFAULT false,
    error            text,
    PRIMARY KEY (run_id, attempt)
);

CREATE TABLE workers (
    id             text PRIMARY KEY,
    address        text NOT NULL,
    labels         jsonb NOT NULL DEFAULT '{}',
    capacity       integer NOT NULL,
    running        integer NOT NULL DEFAULT 0,
    version        text NOT NULL DEFAULT '',
    draining       boolean NOT NULL DEFAULT false,
    registered_at  timestamptz NOT NULL DEFAULT now(),
    last_heartbeat timestamptz NOT NULL DEFAULT now()
);
