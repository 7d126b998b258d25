-- Created after the rows are in (one sort per index instead of one insert per row).
CREATE INDEX ON {schema}.dim_customers (state, city);
CREATE INDEX ON {schema}.dim_customers (registered_month);
CREATE INDEX ON {schema}.dim_payment_methods (kind, card_brand);
CREATE INDEX ON {schema}.dim_products (seller_id);
CREATE INDEX ON {schema}.dim_products (category);
CREATE INDEX ON {schema}.fact_stock_movements (product_id, created_at);
CREATE INDEX ON {schema}.fact_stock_movements (created_day);
CREATE INDEX ON {schema}.fact_reservations (created_day, status);
CREATE INDEX ON {schema}.fact_reservations (closed_at) WHERE status = 'committed';
CREATE INDEX ON {schema}.fact_reservation_items (product_id);
CREATE INDEX ON {schema}.fact_price_history (product_id, as_of);
