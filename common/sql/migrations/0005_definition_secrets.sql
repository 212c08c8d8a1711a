-- Secret environment variables of definitions (and so of DAG jobs and workflow nodes):
-- passed only to the job's process; the API shows each value as "***", like a cron job's.
ALTER TABLE definitions ADD COLUMN secret_env jsonb NOT NULL DEFAULT '{}';
