-- The request that revealed a secret (its X-Request-Id), so an audit entry can be matched with
-- the request logs. Entries written before this column have none.
ALTER TABLE secret_access_audit ADD COLUMN request_id TEXT;
