-- Transactional outbox and inbox (see vitrine-messaging); same shape as on PostgreSQL.

CREATE TABLE outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              BLOB NOT NULL UNIQUE,
    destination     TEXT NOT NULL,
    aggregate       TEXT NOT NULL,
    envelope        TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    lease_until     TEXT,
    last_error      TEXT,
    sent_at         TEXT
) STRICT;
CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;
CREATE INDEX outbox_unsent_aggregate ON outbox (aggregate, seq) WHERE sent_at IS NULL;

CREATE TABLE inbox (
    consumer   TEXT NOT NULL,
    message_id BLOB NOT NULL,
    handled_at TEXT NOT NULL,
    PRIMARY KEY (consumer, message_id)
) STRICT;
CREATE INDEX inbox_handled_at ON inbox (handled_at);
