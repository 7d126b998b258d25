-- user-information schema (SQLite, embedded default). Same shape as the PostgreSQL schema; ids are
-- 16-byte UUID blobs, times RFC 3339 text. Card numbers and PIX keys are never stored here.

CREATE TABLE customers (
    id                  BLOB PRIMARY KEY NOT NULL,
    cnpj                TEXT NOT NULL UNIQUE CHECK (length(cnpj) = 14),
    legal_name          TEXT NOT NULL,
    trade_name          TEXT,
    email               TEXT NOT NULL,
    phone               TEXT,
    address_street      TEXT NOT NULL,
    address_number      TEXT NOT NULL,
    address_complement  TEXT,
    address_district    TEXT NOT NULL,
    address_city        TEXT NOT NULL,
    address_state       TEXT NOT NULL CHECK (length(address_state) = 2),
    address_postal_code TEXT NOT NULL CHECK (length(address_postal_code) = 8),
    status              TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'closed')),
    version             INTEGER NOT NULL,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
) STRICT;
CREATE INDEX customers_status_id ON customers (status, id);

CREATE TABLE payment_methods (
    id               BLOB PRIMARY KEY NOT NULL,
    customer_id      BLOB NOT NULL REFERENCES customers (id),
    kind             TEXT NOT NULL CHECK (kind IN ('card', 'pix')),
    card_brand       TEXT,
    card_last4       TEXT CHECK (length(card_last4) = 4),
    card_exp_month   INTEGER CHECK (card_exp_month BETWEEN 1 AND 12),
    card_exp_year    INTEGER,
    card_holder_name TEXT,
    pix_key_type     TEXT CHECK (pix_key_type IN ('cpf', 'cnpj', 'email', 'phone', 'evp')),
    pix_masked_key   TEXT,
    secret_path      TEXT NOT NULL UNIQUE,
    created_at       TEXT NOT NULL,
    CHECK ((kind = 'card') = (card_last4 IS NOT NULL AND card_brand IS NOT NULL)),
    CHECK ((kind = 'pix') = (pix_key_type IS NOT NULL AND pix_masked_key IS NOT NULL))
) STRICT;
CREATE INDEX payment_methods_customer_id ON payment_methods (customer_id, id);

CREATE TABLE secret_access_audit (
    id                BLOB PRIMARY KEY NOT NULL,
    customer_id       BLOB NOT NULL,
    payment_method_id BLOB NOT NULL,
    actor             TEXT NOT NULL,
    accessed_at       TEXT NOT NULL
) STRICT;
CREATE INDEX secret_access_audit_method ON secret_access_audit (payment_method_id, accessed_at);

CREATE TABLE idempotency_keys (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    status       INTEGER,
    headers      TEXT,
    body         BLOB,
    locked_until TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (scope, key)
) STRICT;
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
