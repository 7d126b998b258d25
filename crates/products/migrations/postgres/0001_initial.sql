-- products schema (PostgreSQL, production). Writes go to the primary; a streaming replica serves
-- reads.

-- Stock lives on the product row: every change is one conditional UPDATE, and the CHECKs make an
-- oversell impossible even for a buggy writer.
CREATE TABLE products (
    id             uuid PRIMARY KEY,
    seller_id      uuid NOT NULL,
    sku            text NOT NULL,
    name           text NOT NULL,
    description    text,
    category       text,
    price_amount   bigint NOT NULL CHECK (price_amount >= 0),
    price_currency text NOT NULL,
    status         text NOT NULL CHECK (status IN ('active', 'inactive')),
    on_hand        bigint NOT NULL CHECK (on_hand >= 0),
    reserved       bigint NOT NULL CHECK (reserved >= 0 AND reserved <= on_hand),
    version        bigint NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    -- Deleted products keep their row: the ledger and past reservations refer to them.
    deleted_at     timestamptz
);
CREATE UNIQUE INDEX products_seller_sku ON products (seller_id, sku) WHERE deleted_at IS NULL;
CREATE INDEX products_seller_id ON products (seller_id, id) WHERE deleted_at IS NULL;
CREATE INDEX products_category_id ON products (category, id) WHERE deleted_at IS NULL;

-- The ledger: every change of on_hand, append-only.
CREATE TABLE stock_movements (
    id             uuid PRIMARY KEY,
    product_id     uuid NOT NULL REFERENCES products (id),
    delta          bigint NOT NULL CHECK (delta <> 0),
    reason         text NOT NULL CHECK (reason IN ('initial', 'restock', 'adjustment', 'loss', 'sale')),
    reservation_id uuid,
    on_hand_after  bigint NOT NULL CHECK (on_hand_after >= 0),
    actor          text,
    created_at     timestamptz NOT NULL
);
CREATE INDEX stock_movements_product_id ON stock_movements (product_id, id);

CREATE TABLE reservations (
    id         uuid PRIMARY KEY,
    buyer_id   uuid,
    status     text NOT NULL CHECK (status IN ('pending', 'committed', 'released', 'expired')),
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX reservations_pending_expiry ON reservations (expires_at) WHERE status = 'pending';

CREATE TABLE reservation_items (
    reservation_id uuid NOT NULL REFERENCES reservations (id),
    product_id     uuid NOT NULL REFERENCES products (id),
    quantity       bigint NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (reservation_id, product_id)
);
CREATE INDEX reservation_items_product_id ON reservation_items (product_id);

-- What products last heard about each seller from user-information's events. Product writes
-- lock this row in their transaction, so a suspension and a concurrent create cannot both win.
CREATE TABLE sellers (
    id         uuid PRIMARY KEY,
    standing   text NOT NULL CHECK (standing IN ('active', 'suspended', 'closed')),
    version    bigint NOT NULL,
    updated_at timestamptz NOT NULL
);

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
