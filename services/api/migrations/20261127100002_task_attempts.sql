-- How many times a worker has claimed the task. A task claimed again while
-- PROCESSING means the worker that had it stopped without recording an
-- outcome (crash, kill, out of memory); past the worker's
-- MAX_TASK_ATTEMPTS it is marked FAILED instead of killing the next worker.
ALTER TABLE tasks ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
