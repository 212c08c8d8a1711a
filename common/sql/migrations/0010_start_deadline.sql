-- A slot's run still pending past its starting deadline (scheduled_for + the larger of its
-- job's catch-up window and the on-time grace, common.catchup.ON_TIME_GRACE = 2 s) is
-- skipped in bulk by the leader's overdue sweep, once a second. The sweep used to test every
-- pending run against its job's window, and under overload (the case it exists for) that
-- is the whole queue every second: 127 ms a sweep, returning nothing, with the ~40,000
-- runs a 60 s window holds at 3,000 per-second jobs. A slot's run now carries its deadline,
-- taken from its job when it is created, and the sweep walks only the runs past it.
-- Retries (attempt > 1) and runs not created for a slot have none.
ALTER TABLE runs ADD COLUMN start_deadline timestamptz;
UPDATE runs r
SET start_deadline = r.scheduled_for + make_interval(secs => GREATEST(j.catchup_window_seconds, 2))
FROM jobs j
WHERE j.id = r.job_id AND r.state = 'pending' AND r.attempt = 1
  AND r.trigger IN ('schedule', 'catchup');
CREATE INDEX runs_start_deadline ON runs (start_deadline)
WHERE state = 'pending' AND start_deadline IS NOT NULL;
