-- farmhand state, version 12: running attempts in a table of their own. Never
-- edit once merged.
--
-- A dispatch used to rewrite its task's row in `tasks`. Under a farm running
-- tasks of many jobs at once those rows lie on as many pages, and every commit
-- wrote each of those pages to the WAL again. A running attempt is now a row
-- here, appended (rowid order is dispatch order, and attempts end in about that
-- order, so both ends of the table stay on few pages). The store keeps at most
-- one row per task: any later change of the task deletes it in the same
-- transaction. At load a task with a row here is running as this row says,
-- whatever its row in `tasks` says (that one is older).
CREATE TABLE running_attempts (
  job_id INTEGER NOT NULL,
  idx INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  budget_base INTEGER NOT NULL,
  lease INTEGER NOT NULL,
  worker TEXT NOT NULL,
  error TEXT NOT NULL
);
