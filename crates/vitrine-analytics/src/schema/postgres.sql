-- The analytics snapshot, created in a schema of its own ({schema}) that replaces the
-- `analytics` schema at once when complete. Days and months are São Paulo's.
CREATE TABLE {schema}.dim_customers (
    customer_id      uuid PRIMARY KEY,
    status           text NOT NULL,
    state            text NOT NULL,
    city             text NOT NULL,
    registered_at    timestamptz NOT NULL,
    registered_month date GENERATED ALWAYS AS
        (date_trunc('month', registered_at AT TIME ZONE 'America/Sao_Paulo')::date) STORED
);
COMMENT ON TABLE {schema}.dim_customers IS 'Customers registered before the cut-off. No name, CNPJ, e-mail, phone or address line: only where (UF, city) and status.';
COMMENT ON COLUMN {schema}.dim_customers.status IS 'active, suspended or closed, as read at the sync';
COMMENT ON COLUMN {schema}.dim_customers.state IS 'UF of the registered address (two letters)';
COMMENT ON COLUMN {schema}.dim_customers.city IS 'City of the registered address';
COMMENT ON COLUMN {schema}.dim_customers.registered_month IS 'First day of the month of registration (São Paulo)';

CREATE TABLE {schema}.dim_payment_methods (
    payment_method_id uuid PRIMARY KEY,
    customer_id       uuid NOT NULL,
    kind              text NOT NULL,
    card_brand        text,
    pix_key_type      text,
    created_at        timestamptz NOT NULL
);
COMMENT ON TABLE {schema}.dim_payment_methods IS 'Payment methods added before the cut-off, for counts by type and brand. No card digits, holder, expiry or PIX key.';
COMMENT ON COLUMN {schema}.dim_payment_methods.kind IS 'card or pix';
COMMENT ON COLUMN {schema}.dim_payment_methods.card_brand IS 'visa, mastercard, amex, elo, hipercard... (cards only)';
COMMENT ON COLUMN {schema}.dim_payment_methods.pix_key_type IS 'cpf, cnpj, email, phone or evp (PIX only); never the key';

CREATE TABLE {schema}.dim_products (
    product_id     uuid PRIMARY KEY,
    seller_id      uuid NOT NULL,
    sku            text NOT NULL,
    name           text NOT NULL,
    category       text,
    status         text NOT NULL,
    price_amount   bigint NOT NULL,
    price_currency text NOT NULL,
    on_hand        bigint NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL
);
COMMENT ON TABLE {schema}.dim_products IS 'Products created before the cut-off, deleted ones included (status deleted).';
COMMENT ON COLUMN {schema}.dim_products.seller_id IS 'The selling customer (dim_customers.customer_id)';
COMMENT ON COLUMN {schema}.dim_products.status IS 'active or inactive as read at the sync; deleted when deleted before the cut-off';
COMMENT ON COLUMN {schema}.dim_products.price_amount IS 'Price in cents, as read at the sync (its history per cut-off: fact_price_history)';
COMMENT ON COLUMN {schema}.dim_products.on_hand IS 'Stock on hand at the cut-off, from the ledger (fact_stock_movements)';

CREATE TABLE {schema}.fact_stock_movements (
    movement_id    uuid PRIMARY KEY,
    product_id     uuid NOT NULL,
    delta          bigint NOT NULL,
    reason         text NOT NULL,
    reservation_id uuid,
    on_hand_after  bigint NOT NULL,
    created_at     timestamptz NOT NULL,
    created_day    date GENERATED ALWAYS AS ((created_at AT TIME ZONE 'America/Sao_Paulo')::date) STORED
);
COMMENT ON TABLE {schema}.fact_stock_movements IS 'The stock ledger before the cut-off: every change of on-hand stock.';
COMMENT ON COLUMN {schema}.fact_stock_movements.delta IS 'Units added (positive) or removed (negative)';
COMMENT ON COLUMN {schema}.fact_stock_movements.reason IS 'initial, restock, adjustment, loss or sale';
COMMENT ON COLUMN {schema}.fact_stock_movements.reservation_id IS 'The committed reservation of a sale';
COMMENT ON COLUMN {schema}.fact_stock_movements.on_hand_after IS 'Stock on hand after this movement';

CREATE TABLE {schema}.fact_reservations (
    reservation_id   uuid PRIMARY KEY,
    buyer_id         uuid,
    status           text NOT NULL,
    created_at       timestamptz NOT NULL,
    closed_at        timestamptz,
    expires_at       timestamptz NOT NULL,
    created_day      date GENERATED ALWAYS AS ((created_at AT TIME ZONE 'America/Sao_Paulo')::date) STORED,
    minutes_to_close numeric GENERATED ALWAYS AS
        (round((extract(epoch FROM closed_at - created_at) / 60)::numeric, 2)) STORED
);
COMMENT ON TABLE {schema}.fact_reservations IS 'Reservations made before the cut-off, with their status at the cut-off.';
COMMENT ON COLUMN {schema}.fact_reservations.buyer_id IS 'The buying customer, when the reservation named one';
COMMENT ON COLUMN {schema}.fact_reservations.status IS 'pending, committed, released or expired at the cut-off (a reservation closed after it counts as pending)';
COMMENT ON COLUMN {schema}.fact_reservations.closed_at IS 'When it was committed, released or expired; null while pending';
COMMENT ON COLUMN {schema}.fact_reservations.minutes_to_close IS 'Minutes from creation to commit, release or expiry';

CREATE TABLE {schema}.fact_reservation_items (
    reservation_id uuid NOT NULL,
    product_id     uuid NOT NULL,
    quantity       bigint NOT NULL,
    PRIMARY KEY (reservation_id, product_id)
);
COMMENT ON TABLE {schema}.fact_reservation_items IS 'What each reservation holds.';

CREATE TABLE {schema}.fact_price_history (
    as_of          timestamptz NOT NULL,
    product_id     uuid NOT NULL,
    price_amount   bigint NOT NULL,
    price_currency text NOT NULL,
    PRIMARY KEY (as_of, product_id)
);
COMMENT ON TABLE {schema}.fact_price_history IS 'The price of every product not deleted, at each sync''s cut-off (kept from snapshot to snapshot).';
COMMENT ON COLUMN {schema}.fact_price_history.as_of IS 'The cut-off of the sync that read this price';

CREATE VIEW {schema}.sales AS
SELECT (r.closed_at AT TIME ZONE 'America/Sao_Paulo')::date AS day,
       r.reservation_id,
       p.seller_id,
       p.category,
       i.product_id,
       i.quantity,
       i.quantity * p.price_amount AS amount
FROM {schema}.fact_reservation_items i
JOIN {schema}.fact_reservations r ON r.reservation_id = i.reservation_id
JOIN {schema}.dim_products p ON p.product_id = i.product_id
WHERE r.status = 'committed';
COMMENT ON VIEW {schema}.sales IS 'Sales: the items of committed reservations, by day of commit (São Paulo). amount is quantity times the price in dim_products, in cents.';
