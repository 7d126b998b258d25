-- Secret trees still to destroy. Closing a customer writes its row in the same transaction that
-- closes it, so an erasure is never forgotten; the row is deleted once the secret store confirms
-- the destruction, and a background worker retries (with backoff) until it does.
CREATE TABLE pending_erasures (
    customer_id     BLOB PRIMARY KEY NOT NULL,
    path            TEXT NOT NULL,
    requested_at    TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT
) STRICT;
CREATE INDEX pending_erasures_due ON pending_erasures (next_attempt_at);
