-- Customers closed before pending erasures were recorded: their secret trees may still exist (a
-- close whose erasure failed was left to a client retry). Queue an erasure for each; destroying
-- an absent tree is a no-op.
INSERT INTO pending_erasures (customer_id, path, requested_at, next_attempt_at)
SELECT id, 'customers/' || id::text, now(), now() FROM customers WHERE status = 'closed'
ON CONFLICT (customer_id) DO NOTHING;
