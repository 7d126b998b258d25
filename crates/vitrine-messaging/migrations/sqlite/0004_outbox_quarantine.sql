-- Outbox rows no relay can read (an envelope or destination written by an older or foreign
-- writer, or edited by hand) move here with the error, out of their aggregate's line, so the
-- relay moves on instead of failing every claim; kept for an operator (`vitrine messages
-- quarantine`), never deleted automatically.
CREATE TABLE outbox_quarantine (
    seq            INTEGER PRIMARY KEY,
    id             BLOB NOT NULL,
    destination    TEXT NOT NULL,
    aggregate      TEXT NOT NULL,
    envelope       TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    error          TEXT NOT NULL,
    quarantined_at TEXT NOT NULL
) STRICT;
