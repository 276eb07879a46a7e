-- farmhand state, version 2: publish events. Never edit once merged.
--
-- One row per accepted publish, with the jobs it created, so a repeated event
-- id is answered from here after a restart and `farmhand events` can list them.

CREATE TABLE events (
  seq INTEGER PRIMARY KEY,          -- order of arrival
  event_id TEXT NOT NULL UNIQUE,
  received_unix_ms INTEGER NOT NULL,
  info BLOB NOT NULL                -- farmhand.wire.EventInfo, serialized
);
