-- The embedded analytics snapshot: the tables of the PostgreSQL one (see postgres.sql for what
-- each column means), in a new file that replaces analytics.sqlite3 when complete. Ids are
-- text; timestamps are RFC 3339 text in UTC; days and months are São Paulo's (UTC-3).
CREATE TABLE dim_customers (
    customer_id      TEXT PRIMARY KEY NOT NULL,
    status           TEXT NOT NULL,
    state            TEXT NOT NULL,
    city             TEXT NOT NULL,
    registered_at    TEXT NOT NULL,
    registered_month TEXT GENERATED ALWAYS AS (strftime('%Y-%m-01', registered_at, '-3 hours')) STORED
);

CREATE TABLE dim_payment_methods (
    payment_method_id TEXT PRIMARY KEY NOT NULL,
    customer_id       TEXT NOT NULL,
    kind              TEXT NOT NULL,
    card_brand        TEXT,
    pix_key_type      TEXT,
    created_at        TEXT NOT NULL
);

CREATE TABLE dim_products (
    product_id     TEXT PRIMARY KEY NOT NULL,
    seller_id      TEXT NOT NULL,
    sku            TEXT NOT NULL,
    name           TEXT NOT NULL,
    category       TEXT,
    status         TEXT NOT NULL,
    price_amount   INTEGER NOT NULL,
    price_currency TEXT NOT NULL,
    on_hand        INTEGER NOT NULL DEFAULT 0,
    created_at     TEXT NOT NULL
);

CREATE TABLE fact_stock_movements (
    movement_id    TEXT PRIMARY KEY NOT NULL,
    product_id     TEXT NOT NULL,
    delta          INTEGER NOT NULL,
    reason         TEXT NOT NULL,
    reservation_id TEXT,
    on_hand_after  INTEGER NOT NULL,
    created_at     TEXT NOT NULL,
    created_day    TEXT GENERATED ALWAYS AS (date(created_at, '-3 hours')) STORED
);

CREATE TABLE fact_reservations (
    reservation_id   TEXT PRIMARY KEY NOT NULL,
    buyer_id         TEXT,
    status           TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    closed_at        TEXT,
    expires_at       TEXT NOT NULL,
    created_day      TEXT GENERATED ALWAYS AS (date(created_at, '-3 hours')) STORED,
    minutes_to_close REAL GENERATED ALWAYS AS
        (round((julianday(closed_at) - julianday(created_at)) * 1440, 2)) STORED
);

CREATE TABLE fact_reservation_items (
    reservation_id TEXT NOT NULL,
    product_id     TEXT NOT NULL,
    quantity       INTEGER NOT NULL,
    PRIMARY KEY (reservation_id, product_id)
);

CREATE TABLE fact_price_history (
    as_of          TEXT NOT NULL,
    product_id     TEXT NOT NULL,
    price_amount   INTEGER NOT NULL,
    price_currency TEXT NOT NULL,
    PRIMARY KEY (as_of, product_id)
);

CREATE VIEW sales AS
SELECT date(r.closed_at, '-3 hours') AS day,
       r.reservation_id,
       p.seller_id,
       p.category,
       i.product_id,
       i.quantity,
       i.quantity * p.price_amount AS amount
FROM fact_reservation_items i
JOIN fact_reservations r ON r.reservation_id = i.reservation_id
JOIN dim_products p ON p.product_id = i.product_id
WHERE r.status = 'committed';

CREATE TABLE sync_runs (
    id          TEXT PRIMARY KEY NOT NULL,
    cutoff      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    status      TEXT NOT NULL,
    row_counts  TEXT
);
