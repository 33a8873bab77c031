-- Image-processing tasks, shared by api (writes them) and worker (processes
-- them). The original image and the thumbnail live here too, so the two
-- services need no shared volume.
CREATE TABLE IF NOT EXISTS tasks (
    id            UUID PRIMARY KEY,
    user_id       UUID NOT NULL,
    status        TEXT NOT NULL
                  CHECK (status IN ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED')),
    content_type  TEXT NOT NULL,
    width         INTEGER NOT NULL,
    height        INTEGER NOT NULL,
    image         BYTEA NOT NULL,
    result        BYTEA,
    result_width  INTEGER,
    result_height INTEGER,
    error         TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX IF NOT EXISTS tasks_by_user_newest_first
    ON tasks (user_id, created_at DESC, id DESC);

-- The transactional outbox: a row is written in the same transaction as its
-- task and deleted once the event is on Kafka. A broker outage delays
-- events; it cannot lose them.
CREATE TABLE IF NOT EXISTS task_outbox (
    id         BIGSERIAL PRIMARY KEY,
    task_id    UUID NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    payload    TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
