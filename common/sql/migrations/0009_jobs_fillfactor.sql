-- A cron job's row is updated every time it fires (next_fire_at) and whenever its slots are
-- skipped (the counters): thousands of updates a second at thousands of per-second jobs. With
-- full pages (fillfactor 100) the new version of a row rarely fits on its own page, so 91 %
-- of those updates were not HOT: each wrote a new index entry and left a dead row behind,
-- and at 5,000 per-second jobs the table grew from 1 MB to 53 MB in 25 s, long before
-- autovacuum's first round, with every tick and dispatch reading through the bloat. Half-full
-- pages leave room for the next version next to the old one (a HOT update, pruned in place).
-- Rows written from now on follow it; existing pages fill up to it as their rows move.
ALTER TABLE jobs SET (fillfactor = 50);
