-- Outbox rows no relay can read (an envelope or destination written by an older or foreign
-- writer, or edited by hand) move here with the error, out of their aggregate's line, so the
-- relay moves on instead of failing every claim; kept for an operator (`vitrine messages
-- quarantine`), never deleted automatically.
CREATE TABLE outbox_quarantine (
    seq            bigint PRIMARY KEY,
    id             uuid NOT NULL,
    destination    text NOT NULL,
    aggregate      text NOT NULL,
    envelope       text NOT NULL,
    created_at     timestamptz NOT NULL,
    error          text NOT NULL,
    quarantined_at timestamptz NOT NULL
);
