-- The embedded transport: SQS-like queues in SQLite, so messages in flight survive a restart.
-- Times are Unix milliseconds.

CREATE TABLE queues (
    name         TEXT PRIMARY KEY NOT NULL,
    dead_letter  TEXT,
    max_receives INTEGER NOT NULL
) STRICT;

CREATE TABLE subscriptions (
    topic       TEXT NOT NULL,
    queue       TEXT NOT NULL REFERENCES queues (name),
    -- JSON array of accepted CloudEvents types; empty array: all.
    event_types TEXT NOT NULL,
    PRIMARY KEY (topic, queue)
) STRICT;

CREATE TABLE topics (
    name TEXT PRIMARY KEY NOT NULL
) STRICT;

CREATE TABLE messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    queue         TEXT NOT NULL REFERENCES queues (name),
    envelope      TEXT NOT NULL,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT,
    enqueued_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX messages_ready ON messages (queue, visible_at, seq);
CREATE INDEX messages_receipt ON messages (receipt);
