-- Webhook endpoints, messages and their deliveries (see vitrine-webhooks). Messages are written
-- in the transaction of the change they announce, with one delivery row per subscribed endpoint;
-- dispatchers claim due deliveries with leases, and every attempt is kept. Signing secrets are
-- not here: they live in the secret store (Vault in production).

CREATE TABLE webhook_endpoints (
    id              uuid PRIMARY KEY,
    -- Who owns it: a customer id, or `admin`.
    tenant          text NOT NULL,
    url             text NOT NULL,
    description     text,
    enabled         boolean NOT NULL,
    disabled_reason text,
    -- Start of the current unbroken run of failed attempts (none since the last success).
    failing_since   timestamptz,
    -- After a rotation, the previous secret signs too until then.
    previous_secret_until timestamptz,
    version         bigint NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    deleted_at      timestamptz
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant, id) WHERE deleted_at IS NULL;

CREATE TABLE webhook_endpoint_events (
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id),
    event_type  text NOT NULL,
    PRIMARY KEY (endpoint_id, event_type)
);
CREATE INDEX webhook_endpoint_events_type ON webhook_endpoint_events (event_type, endpoint_id);

CREATE TABLE webhook_messages (
    id         uuid PRIMARY KEY,
    tenant     text NOT NULL,
    event_type text NOT NULL,
    -- The delivered body, byte for byte: {"type","timestamp","data"}.
    body       bytea NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE webhook_deliveries (
    message_id      uuid NOT NULL REFERENCES webhook_messages (id),
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoints (id),
    -- pending, delivered, failed (schedule exhausted), aborted (by the receiver), cancelled
    state           text NOT NULL CHECK (state IN ('pending', 'delivered', 'failed', 'aborted', 'cancelled')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    lease_until     timestamptz,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (message_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, state, updated_at);

CREATE TABLE webhook_attempts (
    id              uuid PRIMARY KEY,
    message_id      uuid NOT NULL,
    endpoint_id     uuid NOT NULL,
    attempted_at    timestamptz NOT NULL,
    status_code     integer,
    duration_ms     bigint NOT NULL,
    error           text,
    -- The delivery's state after this attempt, and when it is tried next while pending.
    state           text NOT NULL,
    next_attempt_at timestamptz,
    FOREIGN KEY (message_id, endpoint_id) REFERENCES webhook_deliveries (message_id, endpoint_id)
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id DESC);
