-- Temporary queues (per-process reply queues): a queue with an expiry is deleted, with its
-- messages, once its owner stops renewing it.
ALTER TABLE queues ADD COLUMN expires_at INTEGER;
