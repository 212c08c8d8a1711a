-- One definition of "a DAG that prune may move to history": deleted, with no DAG run still
-- running. Its edges, memberships and the DAG row itself are moved by three statements of
-- one transaction (common/sql/dags.sql, prune_*), which all read this view.
CREATE VIEW prunable_dags AS
SELECT g.id FROM dags g
WHERE g.deleted_at IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM dag_runs r WHERE r.dag_id = g.id AND r.state = 'running');
