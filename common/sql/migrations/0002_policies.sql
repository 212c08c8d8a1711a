-- Overlap and catch-up policies, per-job concurrency, counters, backfill runs.

ALTER TABLE jobs
    ADD COLUMN overlap text NOT NULL DEFAULT 'allow'
        CHECK (overlap IN ('allow', 'skip', 'buffer_one', 'buffer_all', 'cancel_other')),
    ADD COLUMN catchup text NOT NULL DEFAULT 'all' CHECK (catchup IN ('all', 'latest', 'none')),
    ADD COLUMN max_concurrency integer NOT NULL DEFAULT 0 CHECK (max_concurrency >= 0),
    ADD COLUMN missed_count bigint NOT NULL DEFAULT 0,
    ADD COLUMN skipped_overlap_count bigint NOT NULL DEFAULT 0,
    ADD COLUMN buffer_dropped_count bigint NOT NULL DEFAULT 0;

ALTER TABLE runs DROP CONSTRAINT runs_trigger_check;
ALTER TABLE runs ADD CONSTRAINT runs_trigger_check
    CHECK (trigger IN ('schedule', 'catchup', 'manual', 'backfill'));

CREATE INDEX runs_job_active ON runs (job_id) WHERE state IN ('dispatched', 'running');
