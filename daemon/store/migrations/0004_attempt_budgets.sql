-- farmhand state, version 4: attempt numbers continue across retries. Never edit once merged.
--
-- `attempts` now counts every attempt of a task over all its retries, so each
-- attempt's log keeps its own row in task_logs. `budget_base` is how many of them
-- were made before the current budget of max_attempts began (a retry opens a new
-- budget); only attempts - budget_base count against max_attempts.

ALTER TABLE tasks ADD COLUMN budget_base INTEGER NOT NULL DEFAULT 0;
