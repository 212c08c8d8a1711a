-- Named queries of DAG workflows (namespaces, definitions, DAGs, DAG runs, prune), used only
-- by common/repo. Parameters are always bound, never formatted in; array parameters in
-- binary (%(name)b), as in queries.sql.

-- ===== namespaces =====

-- name: namespace_insert
-- A deleted namespace may be created again (its old rows are still referenced by history).
INSERT INTO namespaces (name, description) VALUES (%(name)s, %(description)s)
ON CONFLICT (name) DO UPDATE
SET description = EXCLUDED.description, deleted_at = NULL, created_at = now()
WHERE namespaces.deleted_at IS NOT NULL
RETURNING name, description, created_at;

-- name: namespace_get
SELECT n.name, n.description, n.created_at,
       (SELECT count(*) FROM definitions d
        WHERE d.namespace = n.name AND d.deleted_at IS NULL) AS definitions,
       (SELECT count(*) FROM dags g
        WHERE g.namespace = n.name AND g.deleted_at IS NULL) AS dags,
       (SELECT count(*) FROM jobs j
        WHERE j.namespace = n.name AND j.deleted_at IS NULL) AS jobs
FROM namespaces n WHERE n.name = %(name)s AND n.deleted_at IS NULL;

-- name: namespaces_list
SELECT name, description, created_at, count(*) OVER () AS total_count
FROM namespaces WHERE deleted_at IS NULL
ORDER BY name LIMIT %(limit)s OFFSET %(offset)s;

-- name: namespace_delete
UPDATE namespaces n SET deleted_at = now()
WHERE n.name = %(name)s AND n.deleted_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM definitions d WHERE d.namespace = n.name AND d.deleted_at IS NULL)
  AND NOT EXISTS (SELECT 1 FROM dags g WHERE g.namespace = n.name AND g.deleted_at IS NULL)
  AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.namespace = n.name AND j.deleted_at IS NULL)
RETURNING n.name;

-- name: namespace_exists
SELECT 1 AS ok FROM namespaces WHERE name = %(name)s AND deleted_at IS NULL;

-- ===== definitions =====

-- name: xact_lock
SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0));

-- name: definition_live
SELECT * FROM definitions
WHERE namespace = %(namespace)s AND name = %(name)s AND deleted_at IS NULL;

-- name: definition_retire
UPDATE definitions SET deleted_at = now() WHERE id = %(id)s AND deleted_at IS NULL;

-- name: definition_insert
INSERT INTO definitions (namespace, name, version, kind, description, command, args, env,
                         secret_env, cwd, http, timeout_seconds, max_retries,
                         retry_backoff_seconds, delay_interval_seconds, cron_spec, timezone,
                         labels)
VALUES (%(namespace)s, %(name)s,
        1 + GREATEST(
            (SELECT COALESCE(max(version), 0) FROM definitions
             WHERE namespace = %(namespace)s AND name = %(name)s),
            (SELECT COALESCE(max((row->>'version')::int), 0) FROM definitions_history
             WHERE row->>'namespace' = %(namespace)s AND row->>'name' = %(name)s)),
        %(kind)s, %(description)s, %(command)s, %(args)s, %(env)s, %(secret_env)s, %(cwd)s,
        %(http)s, %(timeout_seconds)s, %(max_retries)s, %(retry_backoff_seconds)s,
        %(delay_interval_seconds)s, %(cron_spec)s, %(timezone)s, %(labels)s)
RETURNING *;

-- name: definition_get
SELECT d.*, false AS pruned FROM definitions d WHERE d.id = %(id)s
UNION ALL
SELECT (jsonb_populate_record(NULL::definitions, h.row)).*, true AS pruned
FROM definitions_history h WHERE h.id = %(id)s;

-- name: definitions_list
SELECT *, count(*) OVER () AS total_count FROM (
    SELECT d.*, false AS pruned FROM definitions d
    WHERE (%(include_deleted)s OR d.deleted_at IS NULL)
    UNION ALL
    SELECT (jsonb_populate_record(NULL::definitions, h.row)).*, true AS pruned
    FROM definitions_history h WHERE %(include_history)s
) all_defs
WHERE (%(namespace)s::text IS NULL OR namespace = %(namespace)s)
  AND (%(name)s::text IS NULL OR name = %(name)s)
ORDER BY namespace, name, version
LIMIT %(limit)s OFFSET %(offset)s;

-- name: definition_scheduled_job
-- The live cron job that runs a definition's cron_spec (any version of that definition).
SELECT j.* FROM jobs j JOIN definitions d ON d.id = j.definition_id
WHERE j.role = 'cron' AND j.deleted_at IS NULL
  AND d.namespace = %(namespace)s AND d.name = %(name)s
FOR UPDATE OF j;

-- name: job_insert_from_definition
-- A definition placed as a job: role 'dag' (a DAG member) or 'cron' (its cron_spec scheduled).
-- Definitions are immutable, so copying the spec into the job never goes stale.
INSERT INTO jobs (name, description, schedule, timezone, command, args, env, secret_env, cwd,
                  timeout_seconds, max_retries, retry_backoff_seconds, labels, paused,
                  catchup_window_seconds, next_fire_at, namespace, role, kind, http,
                  definition_id, priority, payload, delay_interval_seconds)
SELECT %(name)s, d.description, COALESCE(CASE WHEN %(role)s = 'cron' THEN d.cron_spec END, ''),
       d.timezone, d.command, d.args, d.env, d.secret_env, d.cwd, d.timeout_seconds,
       d.max_retries, d.retry_backoff_seconds, d.labels, false, %(catchup_window_seconds)s, %(next_fire_at)s,
       d.namespace, %(role)s, d.kind, d.http, d.id, %(priority)s, %(payload)s,
       d.delay_interval_seconds
FROM definitions d WHERE d.id = %(definition_id)s
RETURNING *;

-- name: job_apply_definition
-- Point a definition's scheduled cron job at a new version; keep its next slot when the
-- timing did not change.
UPDATE jobs j SET description = d.description, schedule = d.cron_spec, timezone = d.timezone,
    command = d.command, args = d.args, env = d.env, secret_env = d.secret_env, cwd = d.cwd,
    kind = d.kind,
    http = d.http, timeout_seconds = d.timeout_seconds, max_retries = d.max_retries,
    retry_backoff_seconds = d.retry_backoff_seconds, labels = d.labels,
    delay_interval_seconds = d.delay_interval_seconds, definition_id = d.id,
    next_fire_at = CASE WHEN j.schedule = d.cron_spec AND j.timezone = d.timezone
                             AND j.next_fire_at IS NOT NULL AND NOT j.paused
                        THEN j.next_fire_at ELSE %(next_fire_at)s END,
    version = j.version + 1, updated_at = now()
FROM definitions d
WHERE d.id = %(definition_id)s AND j.id = %(job_id)s
RETURNING j.*;

-- name: job_insert_inline
-- A node of a one-shot workflow: its spec comes with the request, not from a definition.
INSERT INTO jobs (name, schedule, command, args, env, secret_env, cwd, timeout_seconds,
                  max_retries, retry_backoff_seconds, namespace, role, kind, http,
                  delay_interval_seconds, deleted_at)
VALUES (%(name)s, '', %(command)s, %(args)s, %(env)s, %(secret_env)s, %(cwd)s,
        %(timeout_seconds)s, %(max_retries)s, %(retry_backoff_seconds)s, %(namespace)s, 'dag',
        %(kind)s, %(http)s, %(delay_interval_seconds)s, now())
RETURNING *;

-- ===== DAGs =====

-- name: dag_insert
INSERT INTO dags (namespace, name, description, schedule, timezone, paused,
                  catchup_window_seconds, next_fire_at, one_shot, deleted_at)
VALUES (%(namespace)s, %(name)s, %(description)s, %(schedule)s, %(timezone)s, %(paused)s,
        %(catchup_window_seconds)s, %(next_fire_at)s, %(one_shot)s,
        CASE WHEN %(one_shot)s THEN now() END)
RETURNING *;

-- name: dag_get
SELECT g.*, false AS pruned FROM dags g WHERE g.id = %(id)s
UNION ALL
SELECT (jsonb_populate_record(NULL::dags, h.row)).*, true AS pruned
FROM dags_history h WHERE h.id = %(id)s;

-- name: dag_lock
SELECT * FROM dags WHERE id = %(id)s AND deleted_at IS NULL FOR UPDATE;

-- name: dag_lock_shared
SELECT * FROM dags WHERE id = %(id)s AND deleted_at IS NULL FOR SHARE;

-- name: dags_list
SELECT g.*, count(*) OVER () AS total_count,
       lr.id AS latest_run_id, lr.state AS latest_run_state,
       lr.created_at AS latest_run_created_at, lr.finished_at AS latest_run_finished_at
FROM (
    SELECT d.*, false AS pruned FROM dags d
    WHERE d.deleted_at IS NULL AND NOT d.one_shot
    UNION ALL
    SELECT (jsonb_populate_record(NULL::dags, h.row)).*, true AS pruned FROM dags_history h
    WHERE %(include_history)s
) g
LEFT JOIN LATERAL (
    SELECT id, state, created_at, finished_at FROM dag_runs r
    WHERE r.dag_id = g.id ORDER BY r.id DESC LIMIT 1
) lr ON true
WHERE (%(namespace)s::text IS NULL OR g.namespace = %(namespace)s)
ORDER BY g.id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: dag_latest_run
SELECT id, state, created_at, finished_at FROM dag_runs
WHERE dag_id = %(id)s ORDER BY id DESC LIMIT 1;

-- name: dag_bump_version
UPDATE dags SET version = version + 1, updated_at = now() WHERE id = %(id)s RETURNING version;

-- name: dag_delete
UPDATE dags SET deleted_at = now(), next_fire_at = NULL, updated_at = now()
WHERE id = %(id)s AND deleted_at IS NULL
RETURNING id;

-- name: dag_delete_unshared_jobs
-- Jobs of a deleted DAG go too, unless another live DAG still uses them.
UPDATE jobs j SET deleted_at = now(), updated_at = now()
WHERE j.id IN (SELECT job_id FROM dag_jobs WHERE dag_id = %(id)s)
  AND j.deleted_at IS NULL AND j.role = 'dag'
  AND NOT EXISTS (
      SELECT 1 FROM dag_jobs dj JOIN dags g ON g.id = dj.dag_id
      WHERE dj.job_id = j.id AND g.id <> %(id)s AND g.deleted_at IS NULL);

-- name: dag_notify
SELECT pg_notify('chronoraft_dag_defs', %(id)s::text);

-- name: dags_schedulable
SELECT id, schedule, timezone, next_fire_at, catchup_window_seconds FROM dags
WHERE deleted_at IS NULL AND NOT paused AND schedule IS NOT NULL;

-- name: dag_schedulable
SELECT id, schedule, timezone, next_fire_at, catchup_window_seconds, paused, deleted_at FROM dags
WHERE id = %(id)s AND schedule IS NOT NULL;

-- name: dags_advance
UPDATE dags g SET next_fire_at = %(new)s
WHERE g.id = %(id)s AND g.next_fire_at IS NOT DISTINCT FROM %(old)s
RETURNING g.id;

-- name: dag_jobs
SELECT j.*, d.version AS definition_version,
       ARRAY(SELECT o.dag_id FROM dag_jobs o WHERE o.job_id = j.id ORDER BY o.dag_id) AS dag_ids
FROM dag_jobs dj
JOIN jobs j ON j.id = dj.job_id
LEFT JOIN definitions d ON d.id = j.definition_id
WHERE dj.dag_id = %(dag_id)s
ORDER BY j.id;

-- name: dag_job_by_name
SELECT j.* FROM dag_jobs dj JOIN jobs j ON j.id = dj.job_id
WHERE dj.dag_id = %(dag_id)s AND j.name = %(name)s;

-- name: dag_job_attach
INSERT INTO dag_jobs (dag_id, job_id) VALUES (%(dag_id)s, %(job_id)s)
ON CONFLICT DO NOTHING;

-- name: dag_job_get
-- A DAG job with the DAGs that hold it.
SELECT j.*, d.version AS definition_version,
       COALESCE((SELECT array_agg(dag_id ORDER BY dag_id) FROM dag_jobs WHERE job_id = j.id),
                '{}') AS dag_ids
FROM jobs j LEFT JOIN definitions d ON d.id = j.definition_id
WHERE j.id = %(id)s;

-- name: definition_latest_in
SELECT * FROM definitions
WHERE namespace = %(namespace)s AND name = %(name)s AND deleted_at IS NULL;

-- name: dependencies_of_dag
SELECT dep.id, dep.dag_id, dep.parent_job_id, p.name AS parent_name, dep.child_job_id,
       c.name AS child_name, dep.dependency_type, dep.created_at, false AS pruned
FROM dependencies dep
JOIN jobs p ON p.id = dep.parent_job_id
JOIN jobs c ON c.id = dep.child_job_id
WHERE dep.dag_id = %(dag_id)s
UNION ALL
SELECT (h.row->>'id')::bigint, (h.row->>'dag_id')::bigint, (h.row->>'parent_job_id')::bigint,
       NULL, (h.row->>'child_job_id')::bigint, NULL, h.row->>'dependency_type',
       (h.row->>'created_at')::timestamptz, true
FROM dependencies_history h
WHERE %(include_history)s AND (h.row->>'dag_id')::bigint = %(dag_id)s
ORDER BY id;

-- name: dependencies_global
-- Every edge of every live DAG: the graph the global acyclicity check runs on.
SELECT dep.parent_job_id, dep.child_job_id FROM dependencies dep
JOIN dags g ON g.id = dep.dag_id
WHERE g.deleted_at IS NULL;

-- name: dependency_insert
INSERT INTO dependencies (dag_id, parent_job_id, child_job_id, dependency_type)
VALUES (%(dag_id)s, %(parent_job_id)s, %(child_job_id)s, %(dependency_type)s)
ON CONFLICT (dag_id, parent_job_id, child_job_id) DO NOTHING
RETURNING id;

-- ===== DAG runs =====

-- name: dag_run_by_key
SELECT * FROM dag_runs
WHERE dag_id = %(dag_id)s AND idempotency_key = %(key)s AND trigger <> 'workflow';

-- name: workflow_run_by_key
SELECT * FROM dag_runs
WHERE namespace = %(namespace)s AND idempotency_key = %(key)s AND trigger = 'workflow';

-- name: dag_run_insert
INSERT INTO dag_runs (dag_id, dag_version, namespace, state, trigger, idempotency_key,
                      request_hash, scheduled_for, edges, error, finished_at)
VALUES (%(dag_id)s, %(dag_version)s, %(namespace)s, %(state)s, %(trigger)s, %(key)s,
        %(request_hash)s, %(scheduled_for)s, %(edges)s, %(error)s,
        CASE WHEN %(state)s = 'running' THEN NULL ELSE now() END)
ON CONFLICT DO NOTHING
RETURNING *;

-- name: dag_run_nodes_insert
INSERT INTO runs (job_id, scheduled_for, trigger, state, max_retries, dag_run_id,
                  idempotency_key, output, exit_code, reused_run_id, finished_at, error, priority)
SELECT v.job_id, %(slot)s, 'dag', v.state, j.max_retries, %(dag_run_id)s, v.key, v.output,
       v.exit_code, v.reused, CASE WHEN v.state = 'waiting' THEN NULL ELSE now() END,
       CASE WHEN v.reused IS NOT NULL
            THEN 'idempotency key already succeeded in run ' || v.reused END, j.priority
FROM unnest(%(job_ids)b::bigint[], %(states)b::text[], %(keys)b::text[], %(outputs)b::text[],
            %(exit_codes)b::int[], %(reused)b::bigint[])
     AS v(job_id, state, key, output, exit_code, reused)
JOIN jobs j ON j.id = v.job_id
RETURNING id, job_id;

-- name: run_by_idempotency_key
SELECT r.id, r.state, r.output, r.exit_code FROM runs r
JOIN dag_runs dr ON dr.id = r.dag_run_id
WHERE r.idempotency_key = %(key)s AND dr.namespace = %(namespace)s
ORDER BY r.id DESC LIMIT 1;

-- name: dag_run_get
SELECT dr.*, COALESCE(g.name, h.row->>'name') AS dag_name
FROM dag_runs dr
LEFT JOIN dags g ON g.id = dr.dag_id
LEFT JOIN dags_history h ON h.id = dr.dag_id
WHERE dr.id = %(id)s;

-- name: dag_run_lock
SELECT * FROM dag_runs WHERE id = %(id)s FOR UPDATE;

-- name: dag_run_nodes
SELECT r.id AS run_id, r.job_id, COALESCE(j.name, h.row->>'name') AS name, r.state, r.attempt,
       r.max_retries, r.not_before, r.dispatched_at, r.started_at, r.finished_at, r.exit_code,
       r.output, r.output_truncated, r.error, r.worker_id, r.idempotency_key, r.reused_run_id,
       r.cancel_requested,
       COALESCE(j.delay_interval_seconds, (h.row->>'delay_interval_seconds')::float8, 0)
           AS delay_interval_seconds,
       COALESCE(j.kind, h.row->>'kind') AS kind
FROM runs r
LEFT JOIN jobs j ON j.id = r.job_id
LEFT JOIN jobs_history h ON h.id = r.job_id
WHERE r.dag_run_id = %(id)s
ORDER BY r.job_id;

-- name: dag_runs_list
-- Newest first; total_count counts up to %(count_to)s, as runs_list does.
WITH hits AS (
  SELECT dr.id FROM dag_runs dr
  WHERE dr.dag_id = %(dag_id)s AND (%(state)s::text IS NULL OR dr.state = %(state)s)
  ORDER BY dr.id DESC
  LIMIT %(count_to)s
)
SELECT dr.*, g.name AS dag_name, (SELECT count(*) FROM hits) AS total_count
FROM (SELECT id FROM hits ORDER BY id DESC LIMIT %(limit)s OFFSET %(offset)s) page
JOIN dag_runs dr ON dr.id = page.id
LEFT JOIN dags g ON g.id = dr.dag_id
ORDER BY dr.id DESC;

-- name: dag_runs_running
SELECT id FROM dag_runs WHERE state = 'running' ORDER BY id;

-- name: dag_nodes_promote
UPDATE runs r SET state = 'pending', not_before = v.not_before, input = v.input
FROM unnest(%(ids)b::bigint[], %(not_befores)b::timestamptz[], %(inputs)b::jsonb[])
     AS v(id, not_before, input)
WHERE r.id = v.id AND r.state = 'waiting'
RETURNING r.id;

-- name: dag_nodes_block
UPDATE runs SET state = %(state)s, error = %(error)s, finished_at = now()
WHERE id = ANY(%(ids)b::bigint[]) AND state = 'waiting';

-- name: dag_run_finish
UPDATE dag_runs SET state = %(state)s, finished_at = now()
WHERE id = %(id)s AND state = 'running';

-- name: dag_run_reopen
UPDATE dag_runs SET state = 'running', finished_at = NULL WHERE id = %(id)s;

-- name: dag_run_notify
SELECT pg_notify('chronoraft_dags', %(id)s::text);

-- name: dag_node_for_job
-- The instance of a job in one DAG run, or in the newest DAG run that holds the job.
SELECT r.*, COALESCE(j.max_retries, 0) AS job_max_retries FROM runs r
LEFT JOIN jobs j ON j.id = r.job_id
WHERE r.job_id = %(job_id)s AND r.dag_run_id IS NOT NULL
  AND (%(dag_run_id)s::bigint IS NULL OR r.dag_run_id = %(dag_run_id)s)
ORDER BY r.dag_run_id DESC LIMIT 1;

-- name: dag_node_lock
SELECT * FROM runs WHERE id = %(id)s FOR UPDATE;

-- name: dag_node_set_final
-- An operator's complete/fail: the node ends here whatever it was doing.
UPDATE runs SET state = %(state)s, error = %(error)s, finished_at = now(),
    cancel_requested = cancel_requested OR state IN ('dispatched', 'running')
WHERE id = %(id)s AND state = %(expected)s
RETURNING id;

-- name: dag_node_close_attempt
UPDATE run_attempts SET state = %(state)s, error = %(error)s, finished_at = now()
WHERE run_id = %(id)s AND attempt = %(attempt)s AND state IN ('dispatched', 'running');

-- name: dag_node_retry
UPDATE runs SET state = 'waiting', attempt = attempt + 1,
    max_retries = attempt + %(job_max_retries)s, worker_id = NULL, dispatched_at = NULL,
    started_at = NULL, finished_at = NULL, exit_code = NULL, output = NULL,
    output_truncated = false, error = NULL, cancel_requested = false, input = NULL,
    not_before = now()
WHERE id = %(id)s AND state = %(expected)s
RETURNING id;

-- name: dag_nodes_reopen
-- Descendants blocked by an ancestor that an operator completed or retried wait again.
UPDATE runs SET state = 'waiting', error = NULL, finished_at = NULL
WHERE dag_run_id = %(dag_run_id)s AND job_id = ANY(%(job_ids)b::bigint[])
  AND (state = 'upstream_failed'
       OR (state IN ('cancelled', 'skipped') AND error LIKE 'upstream %%'));

-- name: dag_nodes_cancel_waiting
UPDATE runs SET state = 'cancelled', error = %(error)s, finished_at = now(),
    cancel_requested = true
WHERE dag_run_id = %(dag_run_id)s AND state IN ('waiting', 'pending')
RETURNING id;

-- name: dag_nodes_cancel_active
UPDATE runs SET cancel_requested = true
WHERE dag_run_id = %(dag_run_id)s AND state IN ('dispatched', 'running')
RETURNING id;

-- ===== prune =====

-- Prune runs in this order inside one transaction: a deleted DAG with no running run (the
-- view prunable_dags) takes its edges and memberships along; then deleted jobs nothing refers
-- to any more; then retired definition versions no job points at.

-- name: prune_dependencies
WITH moved AS (
    DELETE FROM dependencies dep
    WHERE dep.dag_id IN (SELECT id FROM prunable_dags)
    RETURNING dep.*
)
INSERT INTO dependencies_history (id, row) SELECT id, to_jsonb(moved) FROM moved
RETURNING id;

-- name: prune_dag_jobs
WITH moved AS (
    DELETE FROM dag_jobs dj
    WHERE dj.dag_id IN (SELECT id FROM prunable_dags)
    RETURNING dj.*
)
INSERT INTO dag_jobs_history (dag_id, job_id, row)
SELECT dag_id, job_id, to_jsonb(moved) FROM moved
RETURNING job_id;

-- name: prune_dags
WITH moved AS (
    DELETE FROM dags d
    WHERE d.id IN (SELECT id FROM prunable_dags)
    RETURNING d.*
)
INSERT INTO dags_history (id, row) SELECT id, to_jsonb(moved) FROM moved
RETURNING id;

-- name: prune_jobs
WITH moved AS (
    DELETE FROM jobs j
    WHERE j.deleted_at IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM dag_jobs dj WHERE dj.job_id = j.id)
      AND NOT EXISTS (SELECT 1 FROM dependencies dep
                      WHERE dep.parent_job_id = j.id OR dep.child_job_id = j.id)
      AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.job_id = j.id
                      AND r.state IN ('waiting', 'pending', 'dispatched', 'running'))
    RETURNING j.*
)
INSERT INTO jobs_history (id, row) SELECT id, to_jsonb(moved) FROM moved
RETURNING id;

-- name: prune_definitions
WITH moved AS (
    DELETE FROM definitions d
    WHERE d.deleted_at IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.definition_id = d.id)
    RETURNING d.*
)
INSERT INTO definitions_history (id, row) SELECT id, to_jsonb(moved) FROM moved
RETURNING id;

-- name: job_history_get
SELECT (jsonb_populate_record(NULL::jobs, h.row)).*, true AS pruned
FROM jobs_history h WHERE h.id = %(id)s;

-- ===== scheduler =====

-- name: scheduler_reload_notify
SELECT pg_notify('chronoraft_jobs', 'all');
