-- SQLite twin of the PostgreSQL migration of the same name: ids are 16-byte UUID blobs, times RFC 3339 text.

-- Batches (`POST /v1/batches`): work done from the products-work queue, one part at a time, each
-- part delivered as a `batch.completed` webhook to the requesting tenant's endpoints. The export
-- covers the products that matched when it was requested (ids up to `upper_bound`), so parts
-- never overlap or miss a product however the catalogue moves meanwhile.
CREATE TABLE batches (
    id              BLOB PRIMARY KEY NOT NULL,
    tenant          TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('products.export', 'stock.snapshot')),
    filter_seller   BLOB,
    filter_category TEXT,
    filter_status   TEXT,
    filter_name     TEXT,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed')),
    parts           INTEGER NOT NULL CHECK (parts >= 1),
    parts_done      INTEGER NOT NULL DEFAULT 0 CHECK (parts_done <= parts),
    part_size       INTEGER NOT NULL CHECK (part_size >= 1),
    items           INTEGER NOT NULL DEFAULT 0,
    upper_bound     BLOB,
    cursor          BLOB,
    created_at      TEXT NOT NULL,
    started_at      TEXT,
    completed_at    TEXT
) STRICT;
CREATE INDEX batches_completed_at ON batches (completed_at);

-- Product imports (`POST /v1/product-imports`): the NDJSON lines are stored as they stream in,
-- then consumed chunk by chunk from the products-work queue. A chunk deletes its lines in the
-- transaction that creates their products and records their errors, so a chunk handled twice
-- (a crash, a redelivery) finds nothing left to do.
CREATE TABLE product_imports (
    id              BLOB PRIMARY KEY NOT NULL,
    tenant          TEXT NOT NULL,
    actor           TEXT NOT NULL,
    idempotency_key TEXT,
    status          TEXT NOT NULL CHECK (status IN ('receiving', 'queued', 'running', 'completed')),
    received        INTEGER NOT NULL DEFAULT 0,
    created         INTEGER NOT NULL DEFAULT 0,
    failed          INTEGER NOT NULL DEFAULT 0,
    chunks          INTEGER NOT NULL DEFAULT 0,
    chunks_done     INTEGER NOT NULL DEFAULT 0 CHECK (chunks_done <= chunks OR status = 'receiving'),
    bytes           INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    completed_at    TEXT
) STRICT;
CREATE UNIQUE INDEX product_imports_key ON product_imports (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX product_imports_status ON product_imports (status, created_at);

CREATE TABLE product_import_lines (
    import_id BLOB NOT NULL REFERENCES product_imports (id) ON DELETE CASCADE,
    line      INTEGER NOT NULL,
    -- NULL when the line could not be kept (too long, not UTF-8): `refused` says why.
    body      TEXT,
    refused   TEXT,
    PRIMARY KEY (import_id, line)
) STRICT;

CREATE TABLE product_import_errors (
    import_id BLOB NOT NULL REFERENCES product_imports (id) ON DELETE CASCADE,
    line      INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    field     TEXT,
    message   TEXT NOT NULL,
    PRIMARY KEY (import_id, line, seq)
) STRICT;
