-- Bounded storage. An original may be gone once its thumbnail is stored
-- (ORIGINAL_RETENTION_SECONDS): the column becomes optional.
ALTER TABLE tasks ALTER COLUMN image DROP NOT NULL;
-- What a task holds in images (original and thumbnail), kept with the row
-- as they come and go: the per-user quota sums it.
ALTER TABLE tasks ADD COLUMN stored_bytes BIGINT NOT NULL DEFAULT 0;
UPDATE tasks
   SET stored_bytes = coalesce(octet_length(image), 0) + coalesce(octet_length(result), 0);
-- Every upload counts the user's active tasks: an index of just those,
-- not a walk of the user's whole history.
CREATE INDEX tasks_active_by_user ON tasks (user_id)
    WHERE status IN ('PENDING', 'PROCESSING');
-- The quota's sum per user, from the index alone.
CREATE INDEX tasks_stored_by_user ON tasks (user_id) INCLUDE (stored_bytes);
-- The retention sweeps: finished tasks by age.
CREATE INDEX tasks_finished_since ON tasks (updated_at)
    WHERE status IN ('COMPLETED', 'FAILED');
