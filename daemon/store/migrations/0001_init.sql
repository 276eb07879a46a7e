-- farmhand state, version 1. Never edit once merged: add 0002_*.sql instead.
--
-- Task rows are sparse: a task that was never dispatched, failed or retried has
-- no row, and its state is derived from its job at start-up. So submitting a
-- million-task job writes one row, not a million.

CREATE TABLE jobs (
  id INTEGER PRIMARY KEY,
  spec BLOB NOT NULL,               -- farmhand.wire.JobSpec, serialized
  submitted_unix_ms INTEGER NOT NULL,
  idempotency_key TEXT UNIQUE,
  paused INTEGER NOT NULL DEFAULT 0,
  cancelled INTEGER NOT NULL DEFAULT 0
);

-- state: 0 waiting, 1 queued, 2 running, 3 succeeded, 4 failed, 5 dead, 6 cancelled
CREATE TABLE tasks (
  job_id INTEGER NOT NULL,
  idx INTEGER NOT NULL,
  state INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  lease INTEGER NOT NULL DEFAULT 0,
  worker TEXT NOT NULL DEFAULT '',
  error TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;

CREATE TABLE task_logs (
  job_id INTEGER NOT NULL,
  idx INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  worker TEXT NOT NULL,
  error TEXT NOT NULL,
  text TEXT NOT NULL,
  PRIMARY KEY (job_id, idx, attempt)
) WITHOUT ROWID;
