-- When the projection of a seller's standing was last compared with user-information's answer:
-- a periodic reconciliation checks the least recently checked sellers with active products, so
-- a status event that never arrived (or an absurd version that pinned the row) cannot leave a
-- suspended seller's products active for good.
ALTER TABLE sellers ADD COLUMN checked_at TEXT;
