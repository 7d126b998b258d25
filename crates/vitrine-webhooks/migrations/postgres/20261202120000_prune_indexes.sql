-- What pruning deletes by: messages by age, and a message's attempts (also what the foreign
-- key from attempts to deliveries checks on every delivery deleted).
CREATE INDEX webhook_messages_created_at ON webhook_messages (created_at);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (message_id, endpoint_id);
