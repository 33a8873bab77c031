-- The W3C traceparent of the upload that stored the event: the relay
-- publishes it in the Kafka record's headers, so the worker's spans join
-- the upload's trace, even when another api process (after a restart)
-- publishes the event. NULL for events queued with tracing off or by the
-- sweeper, which starts a trace of its own.
ALTER TABLE task_outbox ADD COLUMN traceparent TEXT;
