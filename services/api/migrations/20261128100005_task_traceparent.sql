-- The W3C traceparent of the statement that created the task (its
-- `INSERT tasks` span): when the sweeper queues a task's event again, the
-- new outbox row takes it, so a redelivery and the worker's processing of
-- it stay in the upload's trace. NULL for tasks created with tracing off.
ALTER TABLE tasks ADD COLUMN traceparent TEXT;
