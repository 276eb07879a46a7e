-- farmhand state, version 7: workers blocked for a job after failing it. Never edit once merged.
--
-- By worker name (a block outlives the worker's sessions and the broker's
-- restarts); `farmhand job unblock` deletes rows, retention deletes a forgotten
-- job's. failures: the failed attempts that led to the block; reason: the last one's error.

CREATE TABLE job_blocks (
  job_id INTEGER NOT NULL,
  worker TEXT NOT NULL,
  failures INTEGER NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (job_id, worker)
) WITHOUT ROWID;
