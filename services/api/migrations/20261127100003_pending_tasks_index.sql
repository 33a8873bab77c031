-- api's relay looks for tasks left PENDING long after their event went out
-- (TASK_REDELIVER_AFTER_SECONDS) every poll: keep that a small index scan.
CREATE INDEX tasks_pending_since ON tasks (updated_at) WHERE status = 'PENDING';
