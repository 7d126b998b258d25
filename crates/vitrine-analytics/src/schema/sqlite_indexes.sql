CREATE INDEX dim_customers_state_city ON dim_customers (state, city);
CREATE INDEX dim_products_seller ON dim_products (seller_id);
CREATE INDEX dim_products_category ON dim_products (category);
CREATE INDEX fact_stock_movements_product ON fact_stock_movements (product_id, created_at);
CREATE INDEX fact_reservations_day ON fact_reservations (created_day, status);
CREATE INDEX fact_reservation_items_product ON fact_reservation_items (product_id);
CREATE INDEX fact_price_history_product ON fact_price_history (product_id, as_of);
