-- Security: secret environment variables of jobs, and the audit trail of API writes.

-- Passed only to the job's process; the API shows each value as "***".
ALTER TABLE jobs ADD COLUMN secret_env jsonb NOT NULL DEFAULT '{}';

-- Who (the token's name) changed what, and when: one row per successful API write.
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    role        text NOT NULL,
    action      text NOT NULL,
    method      text NOT NULL,
    path        text NOT NULL,
    target_type text,
    target_id   text,
    status      integer NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_recent ON audit_log (id DESC);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor, id DESC);
