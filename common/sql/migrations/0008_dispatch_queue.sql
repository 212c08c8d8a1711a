-- The dispatcher takes due pending runs highest priority first, then oldest. The priority
-- used to be read from jobs through a join, so no index could give that order and every
-- 256-run batch sorted the whole due backlog (50 ms at 20,000 pending): the queue got
-- slower to drain the longer it grew. A job's priority never changes once the job row
-- exists (DAG placements are immutable versions, cron jobs are 0), so each run carries a
-- copy taken when it is created and one index serves the claim in order.
ALTER TABLE runs ADD COLUMN priority integer NOT NULL DEFAULT 0;
UPDATE runs r SET priority = j.priority
FROM jobs j
WHERE j.id = r.job_id AND j.priority <> 0 AND r.state IN ('waiting', 'pending');
DROP INDEX runs_pending;
CREATE INDEX runs_pending ON runs (priority DESC, not_before, id) WHERE state = 'pending';
