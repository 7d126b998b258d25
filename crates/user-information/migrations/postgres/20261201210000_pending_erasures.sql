-- Secret trees still to destroy. Closing a customer writes its row in the same transaction that
-- closes it, so an erasure is never forgotten; the row is deleted once the secret store confirms
-- the destruction, and a background worker retries (with backoff) until it does.
CREATE TABLE pending_erasures (
    customer_id     uuid PRIMARY KEY,
    path            text NOT NULL,
    requested_at    timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error      text
);
CREATE INDEX pending_erasures_due ON pending_erasures (next_attempt_at);
