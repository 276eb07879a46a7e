-- farmhand state, version 11: the webhooks' outbox. Never edit once merged.
--
-- A farm event that a hook names becomes a row here in the same transaction as
-- the change that caused it, so a delivery survives farmhandd being killed and
-- is sent (again) after a restart; the receiver deduplicates by delivery_id.
-- seq: creation order (deliveries of one hook about one job go out in it).
-- A delivered row is deleted and counted in hook_counts; a row given up stays
-- with failed = 1, for `farmhand hooks`.

CREATE TABLE hook_outbox (
  delivery_id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  hook TEXT NOT NULL,
  event TEXT NOT NULL,
  job_id INTEGER NOT NULL,          -- 0: not about a job
  body TEXT NOT NULL,               -- the exact JSON sent (and signed)
  created_unix_ms INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_unix_ms INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  failed INTEGER NOT NULL DEFAULT 0,
  failed_unix_ms INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE hook_counts (
  hook TEXT PRIMARY KEY,
  delivered INTEGER NOT NULL
) WITHOUT ROWID;
