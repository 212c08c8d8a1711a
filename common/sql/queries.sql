-- Named queries used by common/repo. Parameters are always bound, never formatted in.
-- Array parameters are sent in binary (%(name)b): psycopg builds a text array element by
-- element in Python (quoting each string, formatting each timestamp), 1.4 ms for 256
-- timestamps against 78 us in binary, and the batch statements of the leader's hot path
-- (runs created, dispatched, marked running, results) spent a quarter of its CPU there.

-- ===== leadership =====

-- name: leadership_claim
UPDATE leadership SET epoch = %(epoch)s, node_id = %(node_id)s, since = now()
-- Re-claiming one's own epoch is allowed (the leader loop restarted inside one term).
WHERE id = 1 AND (epoch < %(epoch)s OR (epoch = %(epoch)s AND node_id = %(node_id)s))
RETURNING epoch;

-- name: leadership_log_insert
INSERT INTO leadership_log (epoch, node_id) VALUES (%(epoch)s, %(node_id)s)
ON CONFLICT (epoch) DO NOTHING;

-- name: leadership_current
SELECT epoch, node_id, since FROM leadership WHERE id = 1;

-- name: leadership_fence
SELECT epoch FROM leadership WHERE id = 1 FOR SHARE;

-- name: leadership_timeline
SELECT epoch, node_id, claimed_at FROM leadership_log ORDER BY epoch DESC LIMIT %(limit)s;

-- ===== jobs =====

-- name: job_insert
INSERT INTO jobs (name, description, schedule, timezone, command, args, env, cwd,
                  timeout_seconds, max_retries, retry_backoff_seconds, labels, paused,
                  catchup_window_seconds, next_fire_at, overlap, catchup, max_concurrency)
VALUES (%(name)s, %(description)s, %(schedule)s, %(timezone)s, %(command)s, %(args)s, %(env)s,
        %(cwd)s, %(timeout_seconds)s, %(max_retries)s, %(retry_backoff_seconds)s, %(labels)s,
        %(paused)s, %(catchup_window_seconds)s, %(next_fire_at)s, %(overlap)s, %(catchup)s,
        %(max_concurrency)s)
RETURNING *;

-- name: job_update
UPDATE jobs SET name = %(name)s, description = %(description)s, schedule = %(schedule)s,
    timezone = %(timezone)s, command = %(command)s, args = %(args)s, env = %(env)s,
    cwd = %(cwd)s, timeout_seconds = %(timeout_seconds)s, max_retries = %(max_retries)s,
    retry_backoff_seconds = %(retry_backoff_seconds)s, labels = %(labels)s,
    paused = %(paused)s, catchup_window_seconds = %(catchup_window_seconds)s,
    next_fire_at = %(next_fire_at)s, overlap = %(overlap)s, catchup = %(catchup)s,
    max_concurrency = %(max_concurrency)s, version = version + 1, updated_at = now()
WHERE id = %(id)s AND deleted_at IS NULL
RETURNING *;

-- name: job_get
SELECT * FROM jobs WHERE id = %(id)s AND deleted_at IS NULL;

-- name: job_get_by_name
-- Names identify cron jobs; DAG jobs are unique only within their DAG (use their id).
SELECT * FROM jobs WHERE name = %(name)s AND deleted_at IS NULL AND role = 'cron';

-- name: job_lock
SELECT * FROM jobs WHERE id = %(id)s AND deleted_at IS NULL FOR UPDATE;

-- name: job_delete
UPDATE jobs SET deleted_at = now(), paused = true, next_fire_at = NULL,
    version = version + 1, updated_at = now()
WHERE id = %(id)s AND deleted_at IS NULL
RETURNING id;

-- name: job_list
SELECT j.*, count(*) OVER () AS total_count,
       lr.id AS last_run_id, lr.state AS last_run_state, lr.finished_at AS last_run_finished_at
FROM jobs j
LEFT JOIN LATERAL (
    SELECT id, state, finished_at FROM runs r WHERE r.job_id = j.id ORDER BY r.id DESC LIMIT 1
) lr ON true
WHERE j.deleted_at IS NULL AND j.role = 'cron'
  AND (%(status)s::text IS NULL
       OR (%(status)s = 'paused' AND j.paused) OR (%(status)s = 'active' AND NOT j.paused))
  AND (%(q)s::text IS NULL OR j.name ILIKE '%%' || %(q)s || '%%')
ORDER BY j.id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: job_notify
SELECT pg_notify('chronoraft_jobs', %(id)s::text);

-- name: jobs_schedulable
SELECT id, schedule, timezone, next_fire_at, catchup_window_seconds, catchup, version
FROM jobs WHERE deleted_at IS NULL AND NOT paused AND role = 'cron';

-- name: job_schedulable
SELECT id, schedule, timezone, next_fire_at, catchup_window_seconds, catchup, version, paused,
       deleted_at, role
FROM jobs WHERE id = %(id)s;

-- name: jobs_advance
-- The rows are locked in id order first (`locked`, which the one-time filter runs to the end
-- before any row is updated), as in every statement that updates many rows: the tick and the
-- dispatcher update thousands of job rows a second in separate transactions, and an
-- UPDATE ... FROM takes its row locks in whatever order its join produces them (deadlocks at
-- 5,000 per-second jobs). (Joining `locked` instead cost 5x the update itself.)
WITH locked AS MATERIALIZED (
  SELECT id FROM jobs WHERE id = ANY(%(ids)b::bigint[]) ORDER BY id FOR NO KEY UPDATE
)
UPDATE jobs j SET next_fire_at = v.next_fire_at, missed_count = j.missed_count + v.missed
FROM unnest(%(ids)b::bigint[], %(olds)b::timestamptz[], %(news)b::timestamptz[],
            %(missed)b::bigint[])
     AS v(id, old_fire_at, next_fire_at, missed)
WHERE (SELECT count(*) FROM locked) >= 0
  AND j.id = v.id
  -- A NULL next_fire_at (a row written without one, e.g. loaded by SQL) is the leader's to
  -- set: the leader computed the slot it fired from the schedule.
  AND (j.next_fire_at IS NOT DISTINCT FROM v.old_fire_at OR j.next_fire_at IS NULL)
RETURNING j.id;

-- name: jobs_count_skips
-- Locks in id order first, like jobs_advance (which runs concurrently in the tick).
WITH locked AS MATERIALIZED (
  SELECT id FROM jobs WHERE id = ANY(%(ids)b::bigint[]) ORDER BY id FOR NO KEY UPDATE
)
UPDATE jobs j SET skipped_overlap_count = j.skipped_overlap_count + v.skipped,
                  buffer_dropped_count = j.buffer_dropped_count + v.dropped,
                  missed_count = j.missed_count + v.missed
FROM unnest(%(ids)b::bigint[], %(skipped)b::bigint[], %(dropped)b::bigint[],
            %(missed)b::bigint[])
     AS v(id, skipped, dropped, missed)
WHERE (SELECT count(*) FROM locked) >= 0 AND j.id = v.id;

-- ===== runs =====

-- name: runs_insert_slots
-- A pending slot's run gets its starting deadline (see migration 0010) from its job's window.
INSERT INTO runs (job_id, scheduled_for, trigger, state, late, max_retries, error, finished_at,
                  priority, start_deadline)
SELECT v.job_id, v.slot, v.trigger, v.state, v.late, j.max_retries, v.error,
       CASE WHEN v.state = 'skipped' THEN now() END, j.priority,
       CASE WHEN v.state = 'pending'
            THEN v.slot + make_interval(secs => GREATEST(j.catchup_window_seconds, %(grace)s))
       END
FROM unnest(%(job_ids)b::bigint[], %(slots)b::timestamptz[], %(triggers)b::text[],
            %(states)b::text[], %(lates)b::boolean[], %(errors)b::text[])
     AS v(job_id, slot, trigger, state, late, error)
JOIN jobs j ON j.id = v.job_id
ON CONFLICT (job_id, scheduled_for) WHERE dag_run_id IS NULL DO NOTHING;

-- name: run_insert_manual
INSERT INTO runs (job_id, scheduled_for, trigger, state, max_retries, priority)
SELECT id, now(), 'manual', 'pending', max_retries, priority FROM jobs
WHERE id = %(job_id)s AND deleted_at IS NULL
RETURNING *;

-- name: runs_notify
SELECT pg_notify('chronoraft_runs', %(reason)s);

-- name: run_get
SELECT r.*, COALESCE(j.name, jh.row->>'name') AS job_name
FROM runs r LEFT JOIN jobs j ON j.id = r.job_id LEFT JOIN jobs_history jh ON jh.id = r.job_id
WHERE r.id = %(id)s;

-- name: run_lock
SELECT r.*, COALESCE(j.retry_backoff_seconds, 10) AS retry_backoff_seconds
FROM runs r LEFT JOIN jobs j ON j.id = r.job_id
WHERE r.id = %(id)s FOR UPDATE OF r;

-- name: run_attempts
SELECT * FROM run_attempts WHERE run_id = %(id)s ORDER BY attempt;

-- name: runs_list
-- Newest first. total_count counts the matches only up to %(count_to)s (common/repo/paging.py):
-- counting them all read the whole history at every call (1.4 s for 1,000,000 runs). The
-- page is taken from the same walk, so the filters are written once.
WITH hits AS (
  SELECT r.id FROM runs r
  WHERE (%(job_id)s::bigint IS NULL OR r.job_id = %(job_id)s)
    AND (%(state)s::text IS NULL OR r.state = %(state)s)
    AND (%(since)s::timestamptz IS NULL OR r.scheduled_for >= %(since)s)
    AND (%(until)s::timestamptz IS NULL OR r.scheduled_for < %(until)s)
  ORDER BY r.id DESC
  LIMIT %(count_to)s
)
SELECT r.id, r.job_id, COALESCE(j.name, jh.row->>'name') AS job_name, r.scheduled_for,
       r.trigger, r.state, r.late, r.attempt, r.max_retries, r.worker_id, r.epoch, r.created_at,
       r.dispatched_at, r.started_at, r.finished_at, r.exit_code, r.output_truncated, r.error,
       r.dag_run_id, (SELECT count(*) FROM hits) AS total_count
FROM (SELECT id FROM hits ORDER BY id DESC LIMIT %(limit)s OFFSET %(offset)s) page
JOIN runs r ON r.id = page.id
LEFT JOIN jobs j ON j.id = r.job_id LEFT JOIN jobs_history jh ON jh.id = r.job_id
ORDER BY r.id DESC;

-- name: runs_claim_pending
-- Walks the runs_pending index in its own order (priority, then oldest): no sort of the
-- backlog, so a batch costs the same at 100 or 100,000 pending. Empty env, secret_env and
-- labels come back NULL (the leader reads NULL as empty): decoding '{}' three times a run
-- was a tenth of the leader's CPU at 1,300 runs a second.
SELECT r.id, r.job_id, r.attempt, r.scheduled_for, r.trigger, r.dag_run_id, r.input,
       r.idempotency_key, j.name, j.kind, j.command, j.args, NULLIF(j.env, '{}') AS env,
       NULLIF(j.secret_env, '{}') AS secret_env, j.cwd, j.http, j.payload, j.timeout_seconds,
       NULLIF(j.labels, '{}') AS labels, j.overlap, j.max_concurrency, j.catchup_window_seconds
FROM runs r JOIN jobs j ON j.id = r.job_id
WHERE r.state = 'pending' AND r.not_before <= now()
ORDER BY r.priority DESC, r.not_before, r.id
LIMIT %(limit)s
FOR UPDATE OF r SKIP LOCKED;

-- name: runs_overdue_slots
-- Slot runs that can no longer start by the starting deadline, found in bulk: under overload
-- they are the oldest of the queue, and skipping them 256 at a time in dispatch batches was
-- slower than new slots arrived (5,000 per-second jobs: every claimed run was already too
-- old, so nothing ever started). The caller checks each with catchup.start_deadline_missed.
-- Walks only the runs past the deadline they were created with (runs_start_deadline), not
-- the whole queue; the job's window is checked again as it is now (an edit may widen it).
SELECT r.id, r.job_id, r.attempt, r.scheduled_for, r.trigger, j.catchup_window_seconds
FROM runs r JOIN jobs j ON j.id = r.job_id
WHERE r.state = 'pending' AND r.start_deadline IS NOT NULL AND r.start_deadline < now()
  AND r.scheduled_for < now() - make_interval(secs => GREATEST(j.catchup_window_seconds, %(grace)s))
ORDER BY r.start_deadline
LIMIT %(limit)s
FOR UPDATE OF r SKIP LOCKED;

-- name: runs_pending_of_jobs
-- Every waiting run of the given jobs, including those deferred by the dispatcher, so a
-- buffer starts its oldest slot first (retries still in backoff are not included). The
-- columns are runs_claim_pending's.
SELECT r.id, r.job_id, r.attempt, r.scheduled_for, r.trigger, r.dag_run_id, r.input,
       r.idempotency_key, j.name, j.kind, j.command, j.args, NULLIF(j.env, '{}') AS env,
       NULLIF(j.secret_env, '{}') AS secret_env, j.cwd, j.http, j.payload, j.timeout_seconds,
       NULLIF(j.labels, '{}') AS labels, j.overlap, j.max_concurrency, j.catchup_window_seconds
FROM runs r JOIN jobs j ON j.id = r.job_id
WHERE r.job_id = ANY(%(job_ids)b::bigint[]) AND r.state = 'pending'
  AND r.not_before <= now() + make_interval(secs => %(horizon)s)
ORDER BY r.scheduled_for, r.id
FOR UPDATE OF r SKIP LOCKED;

-- name: runs_active_of_jobs
SELECT id, job_id, attempt, worker_id FROM runs
WHERE job_id = ANY(%(job_ids)b::bigint[]) AND state IN ('dispatched', 'running');

-- name: runs_active_total
SELECT count(*) AS n FROM runs WHERE state IN ('dispatched', 'running');

-- name: runs_skip_pending
-- Only for pending runs locked in this transaction (runs_claim_pending, runs_pending_of_jobs,
-- runs_overdue_slots): that lock is the guard, so the runs are found by id alone (see
-- runs_mark_dispatched for what a state guard here made the planner do).
UPDATE runs r SET state = 'skipped', error = v.reason, finished_at = now()
FROM unnest(%(ids)b::bigint[], %(reasons)b::text[]) AS v(id, reason)
WHERE r.id = v.id;

-- name: runs_defer_pending
-- Waiting runs step aside so they do not fill every dispatch batch while they wait. Only
-- for pending runs locked in this transaction, like runs_skip_pending.
UPDATE runs SET not_before = now() + make_interval(secs => %(delay)s)
WHERE id = ANY(%(ids)b::bigint[]);

-- name: runs_request_cancel_many
-- Locks in id order first (see jobs_advance), like everything else that updates active runs;
-- the state is checked on the rows as locked (see runs_mark_running).
WITH locked AS MATERIALIZED (
  SELECT id, state FROM runs WHERE id = ANY(%(ids)b::bigint[]) ORDER BY id FOR NO KEY UPDATE
)
UPDATE runs r SET cancel_requested = true
FROM locked l
WHERE r.id = l.id AND l.state IN ('dispatched', 'running');

-- name: runs_insert_backfill
INSERT INTO runs (job_id, scheduled_for, trigger, state, max_retries, not_before, priority)
SELECT j.id, v.slot, 'backfill', 'pending', j.max_retries,
       now() + make_interval(secs => v.delay), j.priority
FROM unnest(%(slots)b::timestamptz[], %(delays)b::double precision[]) AS v(slot, delay)
JOIN jobs j ON j.id = %(job_id)s
ON CONFLICT (job_id, scheduled_for) WHERE dag_run_id IS NULL DO NOTHING
RETURNING id;

-- name: runs_mark_dispatched
-- Only in the transaction whose claim (runs_claim_pending) locked these runs while they were
-- pending: that lock is the guard, so the runs are found by id alone. With a state guard
-- here (`r.state = 'pending'`, or compared with a sub-select) the planner read every pending
-- run through runs_pending or runs_state_recent and hash-joined them to the batch whenever
-- its statistics had not caught up with a growing queue (autovacuum analyzes a hot table
-- far less often than the queue changes): 22 of 29 ms a batch at 60,000 pending.
UPDATE runs r SET state = 'dispatched', worker_id = v.worker_id, epoch = %(epoch)s,
    dispatched_at = now()
FROM unnest(%(ids)b::bigint[], %(workers)b::text[]) AS v(id, worker_id)
WHERE r.id = v.id
RETURNING r.id;

-- name: attempts_upsert_dispatched
INSERT INTO run_attempts (run_id, attempt, worker_id, epoch, state, dispatched_at)
SELECT r.id, r.attempt, r.worker_id, r.epoch, 'dispatched', r.dispatched_at
FROM runs r WHERE r.id = ANY(%(ids)b::bigint[])
ON CONFLICT (run_id, attempt) DO UPDATE
SET worker_id = EXCLUDED.worker_id, epoch = EXCLUDED.epoch, state = 'dispatched',
    dispatched_at = EXCLUDED.dispatched_at;

-- name: runs_mark_running
-- Runs workers said they started: from the leader (with the start time each worker
-- reported) or from a worker's heartbeat (no start time; only that worker's runs, and only
-- those dispatched `settled` seconds ago or more: the leader marks the others, unless it
-- died first; a heartbeat marking every run it listed wrote a third of all runs twice).
-- Runs another transaction holds are passed over, not waited for: a batch of results
-- holds a run whose `true` ended before its batch was marked (the mark would be moot),
-- and a run the leader and a heartbeat mark at once is marked by one of them; whatever
-- still runs is in the worker's next heartbeat. Waiting instead held marks and result
-- batches 60-300 ms behind each other at 1,500 runs a second (and needed id order to not
-- deadlock). The runs are read by id alone (`seen`, materialized) and only the ones still
-- to mark are locked; the guards are checked on the rows as locked, never in a scan of
-- `runs`: with `r.state = 'dispatched'` there the planner, on statistics from a quiet
-- moment, walked every active run (runs_active and runs_state_recent) and joined each to
-- the batch, 90 ms a call. The attempts marked are the runs marked (`marked`), by key.
WITH seen AS MATERIALIZED (
  SELECT id, state, dispatched_at FROM runs WHERE id = ANY(%(ids)b::bigint[])
), locked AS MATERIALIZED (
  SELECT r.id, r.attempt, r.state, r.worker_id FROM runs r JOIN seen s ON s.id = r.id
  WHERE s.state = 'dispatched'
    AND s.dispatched_at <= now() - make_interval(secs => %(settled)s)
  FOR NO KEY UPDATE OF r SKIP LOCKED
), marked AS (
  UPDATE runs r SET state = 'running', started_at = COALESCE(v.started_at, r.started_at, now())
  FROM locked l
  JOIN unnest(%(ids)b::bigint[], %(attempts)b::int[], %(started)b::timestamptz[])
       AS v(id, attempt, started_at) ON v.id = l.id AND v.attempt = l.attempt
  WHERE r.id = l.id AND l.state = 'dispatched'
    AND (%(worker_id)s::text IS NULL OR l.worker_id = %(worker_id)s::text)
  RETURNING r.id, r.attempt, r.started_at
)
UPDATE run_attempts a SET state = 'running', started_at = m.started_at
FROM marked m
WHERE a.run_id = m.id AND a.attempt = m.attempt;

-- name: run_requeue_same_attempt
-- A run whose cancel was requested while it bounced is cancelled instead of re-queued.
UPDATE runs SET state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'pending' END,
    finished_at = CASE WHEN cancel_requested THEN now() END,
    worker_id = NULL, dispatched_at = NULL,
    not_before = now() + make_interval(secs => %(delay)s)
WHERE id = %(id)s AND attempt = %(attempt)s AND state = 'dispatched'
RETURNING id;

-- name: attempt_mark_refused
UPDATE run_attempts SET state = 'refused', error = %(error)s, finished_at = now()
WHERE run_id = %(id)s AND attempt = %(attempt)s AND state = 'dispatched';

-- name: run_finish
UPDATE runs SET state = %(state)s, exit_code = %(exit_code)s, output = %(output)s,
    output_truncated = %(output_truncated)s, error = %(error)s,
    started_at = COALESCE(%(started_at)s, started_at), finished_at = %(finished_at)s
WHERE id = %(id)s AND attempt = %(attempt)s AND state IN ('dispatched', 'running');

-- name: run_retry
UPDATE runs SET state = 'pending', attempt = attempt + 1, worker_id = NULL,
    dispatched_at = NULL, started_at = NULL, finished_at = NULL, start_deadline = NULL,
    exit_code = %(exit_code)s, output = %(output)s, output_truncated = %(output_truncated)s,
    error = %(error)s, not_before = now() + make_interval(secs => %(delay)s)
WHERE id = %(id)s AND attempt = %(attempt)s AND state IN ('dispatched', 'running');

-- name: attempt_finish
INSERT INTO run_attempts (run_id, attempt, worker_id, state, started_at, finished_at,
                          exit_code, output, output_truncated, error)
VALUES (%(id)s, %(attempt)s, %(worker_id)s, %(state)s, %(started_at)s, %(finished_at)s,
        %(exit_code)s, %(output)s, %(output_truncated)s, %(error)s)
ON CONFLICT (run_id, attempt) DO UPDATE
SET state = EXCLUDED.state, started_at = COALESCE(EXCLUDED.started_at, run_attempts.started_at),
    finished_at = EXCLUDED.finished_at, exit_code = EXCLUDED.exit_code,
    output = EXCLUDED.output, output_truncated = EXCLUDED.output_truncated,
    error = EXCLUDED.error;

-- name: runs_lock_for_results
-- A batch of worker results (runs.finish_attempts): every run of the batch locked in one
-- statement, in id order (the same order for every batch, so two never deadlock). Only the
-- columns the decision reads: a run's previous output can be large.
SELECT r.id, r.attempt, r.state, r.worker_id, r.cancel_requested, r.max_retries,
       r.dag_run_id, COALESCE(j.retry_backoff_seconds, 10) AS retry_backoff_seconds
FROM runs r LEFT JOIN jobs j ON j.id = r.job_id
WHERE r.id = ANY(%(ids)b::bigint[])
ORDER BY r.id
FOR UPDATE OF r;

-- name: attempts_finish_many
-- attempt_finish for many attempts (at most one row per (run_id, attempt)).
INSERT INTO run_attempts (run_id, attempt, worker_id, state, started_at, finished_at,
                          exit_code, output, output_truncated, error)
SELECT v.id, v.attempt, v.worker_id, v.state, v.started_at, v.finished_at, v.exit_code,
       v.output, v.output_truncated, v.error
FROM unnest(%(ids)b::bigint[], %(attempts)b::int[], %(worker_ids)b::text[],
            %(states)b::text[], %(started)b::timestamptz[], %(finished)b::timestamptz[],
            %(exit_codes)b::int[], %(outputs)b::text[], %(truncated)b::boolean[],
            %(errors)b::text[])
     AS v(id, attempt, worker_id, state, started_at, finished_at, exit_code, output,
          output_truncated, error)
ON CONFLICT (run_id, attempt) DO UPDATE
SET state = EXCLUDED.state, started_at = COALESCE(EXCLUDED.started_at, run_attempts.started_at),
    finished_at = EXCLUDED.finished_at, exit_code = EXCLUDED.exit_code,
    output = EXCLUDED.output, output_truncated = EXCLUDED.output_truncated,
    error = EXCLUDED.error;

-- name: runs_finish_many
-- run_finish for many runs (at most one row per run), after runs_lock_for_results locked
-- them in this transaction and the caller decided each from the row as locked: that is the
-- guard, so the runs are found by id alone (with `r.state IN ('dispatched', 'running')` here
-- the planner walked every active run through runs_active and joined each to the batch
-- whenever its statistics were from a quiet moment, 85 ms a batch at 1,500 runs a second).
UPDATE runs r SET state = v.state, exit_code = v.exit_code, output = v.output,
    output_truncated = v.output_truncated, error = v.error,
    started_at = COALESCE(v.started_at, r.started_at), finished_at = v.finished_at
FROM unnest(%(ids)b::bigint[], %(attempts)b::int[], %(states)b::text[],
            %(exit_codes)b::int[], %(outputs)b::text[], %(truncated)b::boolean[],
            %(errors)b::text[], %(started)b::timestamptz[], %(finished)b::timestamptz[])
     AS v(id, attempt, state, exit_code, output, output_truncated, error, started_at,
          finished_at)
WHERE r.id = v.id AND r.attempt = v.attempt;

-- name: runs_retry_many
-- run_retry for many runs (at most one row per run), each with its own backoff; locked and
-- decided like runs_finish_many.
UPDATE runs r SET state = 'pending', attempt = r.attempt + 1, worker_id = NULL,
    dispatched_at = NULL, started_at = NULL, finished_at = NULL, start_deadline = NULL,
    exit_code = v.exit_code, output = v.output, output_truncated = v.output_truncated,
    error = v.error, not_before = now() + make_interval(secs => v.delay)
FROM unnest(%(ids)b::bigint[], %(attempts)b::int[], %(exit_codes)b::int[],
            %(outputs)b::text[], %(truncated)b::boolean[], %(errors)b::text[],
            %(delays)b::double precision[])
     AS v(id, attempt, exit_code, output, output_truncated, error, delay)
WHERE r.id = v.id AND r.attempt = v.attempt;

-- name: run_cancel_pending
UPDATE runs SET state = 'cancelled', cancel_requested = true, finished_at = now(),
    error = 'cancelled by request'
WHERE id = %(id)s AND state = 'pending'
RETURNING id;

-- name: run_request_cancel
UPDATE runs SET cancel_requested = true
WHERE id = %(id)s AND state IN ('dispatched', 'running')
RETURNING id, worker_id, attempt;

-- name: runs_cancel_requested
SELECT r.id, r.attempt, r.worker_id, w.address FROM runs r JOIN workers w ON w.id = r.worker_id
WHERE r.cancel_requested AND r.state IN ('dispatched', 'running');

-- name: runs_on_lost_workers
SELECT r.id, r.attempt, r.worker_id FROM runs r
LEFT JOIN workers w ON w.id = r.worker_id
WHERE r.state IN ('dispatched', 'running')
  AND (w.id IS NULL OR w.last_heartbeat < now() - make_interval(secs => %(lease)s));

-- name: runs_unacknowledged
SELECT r.id, r.attempt, r.worker_id FROM runs r
WHERE r.state = 'dispatched'
  AND r.dispatched_at < now() - make_interval(secs => %(ack_timeout)s);

-- name: runs_active_counts
SELECT worker_id, count(*) AS active FROM runs
WHERE state IN ('dispatched', 'running') GROUP BY worker_id;

-- name: runs_state_counts
-- Unfinished runs only, one count per state so that each reads its partial index
-- (runs_state_recent, runs_pending, runs_active): bounded by the queue, not the history.
-- Counting the finished ones at every scrape read the whole history (the counters
-- chronoraft_results_total and chronoraft_slots_total count them as they happen).
SELECT 'waiting' AS state, count(*) AS n FROM runs WHERE state = 'waiting'
UNION ALL SELECT 'pending', count(*) FROM runs WHERE state = 'pending'
UNION ALL SELECT 'dispatched', count(*) FROM runs WHERE state = 'dispatched'
UNION ALL SELECT 'running', count(*) FROM runs WHERE state = 'running';

-- ===== workers =====

-- name: worker_heartbeat
-- allowed_commands NULL: the worker has no allowlist (every command runs there).
INSERT INTO workers (id, address, labels, capacity, running, version, draining,
                     allowed_commands, last_heartbeat)
VALUES (%(id)s, %(address)s, %(labels)s, %(capacity)s, %(running)s, %(version)s,
        %(draining)s, %(allowed_commands)s, now())
ON CONFLICT (id) DO UPDATE
SET address = EXCLUDED.address, labels = EXCLUDED.labels, capacity = EXCLUDED.capacity,
    running = EXCLUDED.running, version = EXCLUDED.version, draining = EXCLUDED.draining,
    allowed_commands = EXCLUDED.allowed_commands, last_heartbeat = now()
RETURNING (xmax = 0) AS registered;

-- name: workers_live
SELECT id, address, labels, capacity, running, version, draining, allowed_commands,
       registered_at, last_heartbeat
FROM workers WHERE last_heartbeat >= now() - make_interval(secs => %(lease)s)
ORDER BY id;

-- name: workers_all
SELECT id, address, labels, capacity, running, version, draining, allowed_commands,
       registered_at, last_heartbeat,
       last_heartbeat >= now() - make_interval(secs => %(lease)s) AS alive
FROM workers ORDER BY id;

-- ===== secret env =====

-- name: job_secret_env_set
-- Written in the same transaction as job_insert / job_update.
UPDATE jobs SET secret_env = %(secret_env)s WHERE id = %(id)s;

-- ===== audit =====

-- name: audit_insert
INSERT INTO audit_log (actor, role, action, method, path, target_type, target_id, status, detail)
VALUES (%(actor)s, %(role)s, %(action)s, %(method)s, %(path)s, %(target_type)s, %(target_id)s,
        %(status)s, %(detail)s)
RETURNING id;

-- name: audit_list
-- Newest first; total_count counts up to %(count_to)s, as runs_list does.
WITH hits AS (
  SELECT id FROM audit_log
  WHERE (%(actor)s::text IS NULL OR actor = %(actor)s)
    AND (%(action)s::text IS NULL OR action = %(action)s)
    AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)
  ORDER BY id DESC
  LIMIT %(count_to)s
)
SELECT a.id, a.at, a.actor, a.role, a.action, a.method, a.path, a.target_type, a.target_id,
       a.status, a.detail, (SELECT count(*) FROM hits) AS total_count
FROM (SELECT id FROM hits ORDER BY id DESC LIMIT %(limit)s OFFSET %(offset)s) page
JOIN audit_log a ON a.id = page.id
ORDER BY a.id DESC;
