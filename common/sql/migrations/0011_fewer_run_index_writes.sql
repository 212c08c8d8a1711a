-- Every change of a run's state is an update PostgreSQL cannot make HOT (state is indexed),
-- so each of the ~4 versions of a run (pending, dispatched, running, finished) adds an entry
-- to every full index on runs. Two of the five full indexes served only searches:
--   runs_state_recent (state, id DESC) indexed every version of every run, though the states
--   a run passes through are already indexed by runs_pending / runs_active, and a search for
--   'succeeded' matches most of the history anyway. It now holds only the rarer states an
--   operator looks for (failures, skips, cancels, and DAG nodes still waiting).
--   runs_scheduled (scheduled_for) becomes a BRIN index: slots are created in time order, so
--   block ranges summarize a time window in a few pages and new versions cost no B-tree entry.
-- /metrics counts unfinished runs by state through the partial indexes (runs_state_counts).
DROP INDEX runs_state_recent;
CREATE INDEX runs_state_recent ON runs (state, id DESC)
WHERE state NOT IN ('pending', 'dispatched', 'running', 'succeeded');
DROP INDEX runs_scheduled;
CREATE INDEX runs_scheduled ON runs USING brin (scheduled_for);
