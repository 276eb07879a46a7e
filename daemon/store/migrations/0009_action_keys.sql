-- farmhand state, version 9: idempotency keys of client actions. Never edit once merged.
--
-- Every action (retry, kill, skip, requeue, cancel, pause, resume, unblock, job
-- set, worker control, limit set) may carry a client-chosen key. The broker stores
-- the reply it gave under the key, in the same transaction as the action's
-- effect, and answers a repeat of the request with it instead of acting again.
-- fingerprint: of the request without its key, so a key reused for another
-- request is refused. Rows older than 7 days are deleted.

CREATE TABLE action_keys (
  key TEXT PRIMARY KEY,
  fingerprint INTEGER NOT NULL,
  reply BLOB NOT NULL,              -- farmhand.wire.ClientReply, serialized
  stored_unix_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX action_keys_age ON action_keys (stored_unix_ms);
