-- Messages no consumer can read (not a CloudEvent this version understands) move here from their
-- queue with the error, so receiving from the queue moves on; kept for an operator
-- (`vitrine messages quarantine`). Times are Unix milliseconds.
CREATE TABLE quarantine (
    seq            INTEGER PRIMARY KEY,
    queue          TEXT NOT NULL,
    envelope       TEXT NOT NULL,
    error          TEXT NOT NULL,
    enqueued_at    INTEGER NOT NULL,
    quarantined_at INTEGER NOT NULL
) STRICT;
