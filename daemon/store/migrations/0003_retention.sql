-- farmhand state, version 3: retention. Never edit once merged.
--
-- When each job finished (succeeded, failed or cancelled; 0 while it is not),
-- so that finished jobs can be forgotten broker.keep_finished_days later.

ALTER TABLE jobs ADD COLUMN finished_unix_ms INTEGER NOT NULL DEFAULT 0;
