-- The deliveries currently (or lately) leased, per endpoint: what a claim counts to keep each
-- endpoint under its in-flight limit. Without it that count scanned every pending delivery of
-- the endpoint for every candidate row, so a claim cost grew with the backlog squared.
CREATE INDEX webhook_deliveries_leased ON webhook_deliveries (endpoint_id, lease_until)
    WHERE state = 'pending' AND lease_until IS NOT NULL;
