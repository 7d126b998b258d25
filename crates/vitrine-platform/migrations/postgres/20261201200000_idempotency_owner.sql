-- The request that reserved a key (a random token): only it may complete, extend or release the
-- reservation, so a request that outlived its reservation cannot overwrite the record of the
-- request that took the key over. Records written before this column have none and can only be
-- replayed or taken over.
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS owner text;
