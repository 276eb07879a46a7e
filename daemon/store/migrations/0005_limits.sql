-- farmhand state, version 5: limits set at runtime. Never edit once merged.
--
-- `farmhand limit set NAME N` stores the limit's capacity here; at start a
-- stored capacity wins over the config's (the wrangler's last word), and a
-- limit whose value changes in the config file is stored anew on reload.

CREATE TABLE limits (
  name TEXT PRIMARY KEY,
  capacity INTEGER NOT NULL
) WITHOUT ROWID;
