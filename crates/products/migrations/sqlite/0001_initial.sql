-- products schema (SQLite, embedded default). Same shape as the PostgreSQL schema; ids are 16-byte
-- UUID blobs, times RFC 3339 text.

-- Stock lives on the product row: every change is one conditional UPDATE, and the CHECKs make an
-- oversell impossible even for a buggy writer.
CREATE TABLE products (
    id             BLOB PRIMARY KEY NOT NULL,
    seller_id      BLOB NOT NULL,
    sku            TEXT NOT NULL,
    name           TEXT NOT NULL,
    description    TEXT,
    category       TEXT,
    price_amount   INTEGER NOT NULL CHECK (price_amount >= 0),
    price_currency TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('active', 'inactive')),
    on_hand        INTEGER NOT NULL CHECK (on_hand >= 0),
    reserved       INTEGER NOT NULL CHECK (reserved >= 0 AND reserved <= on_hand),
    version        INTEGER NOT NULL,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    -- Deleted products keep their row: the ledger and past reservations refer to them.
    deleted_at     TEXT
) STRICT;
CREATE UNIQUE INDEX products_seller_sku ON products (seller_id, sku) WHERE deleted_at IS NULL;
CREATE INDEX products_seller_id ON products (seller_id, id) WHERE deleted_at IS NULL;
CREATE INDEX products_category_id ON products (category, id) WHERE deleted_at IS NULL;

-- The ledger: every change of on_hand, append-only.
CREATE TABLE stock_movements (
    id             BLOB PRIMARY KEY NOT NULL,
    product_id     BLOB NOT NULL REFERENCES products (id),
    delta          INTEGER NOT NULL CHECK (delta <> 0),
    reason         TEXT NOT NULL CHECK (reason IN ('initial', 'restock', 'adjustment', 'loss', 'sale')),
    reservation_id BLOB,
    on_hand_after  INTEGER NOT NULL CHECK (on_hand_after >= 0),
    actor          TEXT,
    created_at     TEXT NOT NULL
) STRICT;
CREATE INDEX stock_movements_product_id ON stock_movements (product_id, id);

CREATE TABLE reservations (
    id         BLOB PRIMARY KEY NOT NULL,
    buyer_id   BLOB,
    status     TEXT NOT NULL CHECK (status IN ('pending', 'committed', 'released', 'expired')),
    expires_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
CREATE INDEX reservations_pending_expiry ON reservations (expires_at) WHERE status = 'pending';

CREATE TABLE reservation_items (
    reservation_id BLOB NOT NULL REFERENCES reservations (id),
    product_id     BLOB NOT NULL REFERENCES products (id),
    quantity       INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (reservation_id, product_id)
) STRICT;
CREATE INDEX reservation_items_product_id ON reservation_items (product_id);

-- What products last heard about each seller from user-information's events. Product writes
-- read this row in their transaction, so a suspension and a concurrent create cannot both win.
CREATE TABLE sellers (
    id         BLOB PRIMARY KEY NOT NULL,
    standing   TEXT NOT NULL CHECK (standing IN ('active', 'suspended', 'closed')),
    version    INTEGER NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;

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
