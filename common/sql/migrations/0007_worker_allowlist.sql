-- Each worker's command allowlist (CHRONORAFT_WORKER_ALLOWED_COMMANDS) as its heartbeat
-- reports it, so the leader places a run only on a worker that will run its command.
-- NULL: no allowlist (every command runs there); a JSON array of glob patterns otherwise.
ALTER TABLE workers ADD COLUMN allowed_commands jsonb;
