-- farmhand state, version 10: when jobs and attempts ran. Never edit once merged.
--
-- jobs.started_unix_ms: when the job's first task was dispatched (0: not yet,
-- or before this version). task_logs.started_unix_ms / finished_unix_ms: an
-- attempt's start and end as the broker saw them (the end is when its result
-- arrived, the start that minus what the worker measured); NULL when unknown
-- (rows from before this version).
ALTER TABLE jobs ADD COLUMN started_unix_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE task_logs ADD COLUMN started_unix_ms INTEGER;
ALTER TABLE task_logs ADD COLUMN finished_unix_ms INTEGER;

-- Covers the last attempt of each task of a `status --tasks` page (who ran it
-- and when), so the page never reads the rows' log text.
CREATE INDEX task_logs_times ON task_logs (job_id, idx, attempt, worker, started_unix_ms,
  finished_unix_ms);
