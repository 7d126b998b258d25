-- The relay claims a window of due messages in (next_attempt_at, seq) order: messages waiting
-- for a retry sit past the window in this index instead of being scanned by every claim. It
-- replaces the seq-only index of unsent messages, which no claim reads any more.
CREATE INDEX outbox_due ON outbox (next_attempt_at, seq) WHERE sent_at IS NULL;
DROP INDEX outbox_unsent;
