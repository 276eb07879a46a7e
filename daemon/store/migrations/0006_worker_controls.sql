-- farmhand state, version 6: workers a wrangler disabled or drains. Never edit once merged.
--
-- By worker name, so that the control outlives the worker's sessions and the
-- broker's restarts. state: 1 disabled, 2 draining (an enabled worker has no row).

CREATE TABLE worker_controls (
  name TEXT PRIMARY KEY,
  state INTEGER NOT NULL,
  reason TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
