-- farmhand state, version 8: what each attempt used. Never edit once merged.
--
-- Per task log row, as its worker measured it; all NULL when unknown (a worker
-- too old to measure): cpu_user_s IS NULL marks those rows. exit_code is NULL
-- unless the attempt's last process exited; exit_signal is '' unless a signal
-- killed it.
ALTER TABLE task_logs ADD COLUMN wall_s REAL;
ALTER TABLE task_logs ADD COLUMN cpu_user_s REAL;
ALTER TABLE task_logs ADD COLUMN cpu_system_s REAL;
ALTER TABLE task_logs ADD COLUMN peak_rss_bytes INTEGER;
ALTER TABLE task_logs ADD COLUMN exit_code INTEGER;
ALTER TABLE task_logs ADD COLUMN exit_signal TEXT;

-- Covers the start-up sums per job and the last attempts of a page of tasks,
-- so neither reads the rows' log text.
CREATE INDEX task_logs_stats ON task_logs (job_id, idx, attempt, wall_s, cpu_user_s,
  cpu_system_s, peak_rss_bytes, exit_code, exit_signal) WHERE cpu_user_s IS NOT NULL;
