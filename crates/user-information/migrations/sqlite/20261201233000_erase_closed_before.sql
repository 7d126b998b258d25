-- Customers closed before pending erasures were recorded: their secret trees may still exist (a
-- close whose erasure failed was left to a client retry). Queue an erasure for each; destroying
-- an absent tree is a no-op.
INSERT INTO pending_erasures (customer_id, path, requested_at, next_attempt_at)
SELECT id,
       'customers/' || lower(substr(hex(id), 1, 8) || '-' || substr(hex(id), 9, 4) || '-' ||
                             substr(hex(id), 13, 4) || '-' || substr(hex(id), 17, 4) || '-' ||
                             substr(hex(id), 21)),
       strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
FROM customers WHERE status = 'closed'
ON CONFLICT (customer_id) DO NOTHING;
