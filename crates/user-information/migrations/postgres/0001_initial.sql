-- user-information schema (PostgreSQL). Card numbers and PIX keys are never stored here: a payment
-- method row keeps the masked view and the path of its secret in the secret store.

CREATE TABLE customers (
    id                  uuid PRIMARY KEY,
    cnpj                text NOT NULL CHECK (cnpj ~ '^[0-9A-Z]{12}[0-9]{2}$'),
    legal_name          text NOT NULL,
    trade_name          text,
    email               text NOT NULL,
    phone               text,
    address_street      text NOT NULL,
    address_number      text NOT NULL,
    address_complement  text,
    address_district    text NOT NULL,
    address_city        text NOT NULL,
    address_state       text NOT NULL CHECK (address_state ~ '^[A-Z]{2}$'),
    address_postal_code text NOT NULL CHECK (address_postal_code ~ '^[0-9]{8}$'),
    status              text NOT NULL CHECK (status IN ('active', 'suspended', 'closed')),
    version             bigint NOT NULL,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    CONSTRAINT customers_cnpj_key UNIQUE (cnpj)
);
CREATE INDEX customers_status_id ON customers (status, id);

CREATE TABLE payment_methods (
    id               uuid PRIMARY KEY,
    customer_id      uuid NOT NULL REFERENCES customers (id),
    kind             text NOT NULL CHECK (kind IN ('card', 'pix')),
    card_brand       text,
    card_last4       text CHECK (card_last4 ~ '^[0-9]{4}$'),
    card_exp_month   smallint CHECK (card_exp_month BETWEEN 1 AND 12),
    card_exp_year    smallint,
    card_holder_name text,
    pix_key_type     text CHECK (pix_key_type IN ('cpf', 'cnpj', 'email', 'phone', 'evp')),
    pix_masked_key   text,
    secret_path      text NOT NULL UNIQUE,
    created_at       timestamptz NOT NULL,
    CHECK ((kind = 'card') = (card_last4 IS NOT NULL AND card_brand IS NOT NULL)),
    CHECK ((kind = 'pix') = (pix_key_type IS NOT NULL AND pix_masked_key IS NOT NULL))
);
CREATE INDEX payment_methods_customer_id ON payment_methods (customer_id, id);

-- Who revealed which payment secret, and when. Kept after the method or customer is gone.
CREATE TABLE secret_access_audit (
    id                uuid PRIMARY KEY,
    customer_id       uuid NOT NULL,
    payment_method_id uuid NOT NULL,
    actor             text NOT NULL,
    accessed_at       timestamptz NOT NULL
);
CREATE INDEX secret_access_audit_method ON secret_access_audit (payment_method_id, accessed_at);

-- Idempotency-Key records (see vitrine-platform http::idempotency).
CREATE TABLE idempotency_keys (
    scope        text NOT NULL,
    key          text NOT NULL,
    fingerprint  text NOT NULL,
    status       smallint,
    headers      jsonb,
    body         bytea,
    locked_until timestamptz NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
