-- Batches (`POST /v1/batches`): work done from the products-work queue, one part at a time, each
-- part delivered as a `batch.completed` webhook to the requesting tenant's endpoints. The export
-- covers the products that matched when it was requested (ids up to `upper_bound`), so parts
-- never overlap or miss a product however the catalogue moves meanwhile.
CREATE TABLE batches (
    id              uuid PRIMARY KEY,
    tenant          text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('products.export', 'stock.snapshot')),
    filter_seller   uuid,
    filter_category text,
    filter_status   text,
    filter_name     text,
    status          text NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed')),
    parts           integer NOT NULL CHECK (parts >= 1),
    parts_done      integer NOT NULL DEFAULT 0 CHECK (parts_done <= parts),
    part_size       integer NOT NULL CHECK (part_size >= 1),
    items           bigint NOT NULL DEFAULT 0,
    upper_bound     uuid,
    cursor          uuid,
    created_at      timestamptz NOT NULL,
    started_at      timestamptz,
    completed_at    timestamptz
);
CREATE INDEX batches_completed_at ON batches (completed_at);

-- Product imports (`POST /v1/product-imports`): the NDJSON lines are stored as they stream in,
-- then consumed chunk by chunk from the products-work queue. A chunk deletes its lines in the
-- transaction that creates their products and records their errors, so a chunk handled twice
-- (a crash, a redelivery) finds nothing left to do.
CREATE TABLE product_imports (
    id              uuid PRIMARY KEY,
    tenant          text NOT NULL,
    actor           text NOT NULL,
    idempotency_key text,
    status          text NOT NULL CHECK (status IN ('receiving', 'queued', 'running', 'completed')),
    received        integer NOT NULL DEFAULT 0,
    created         integer NOT NULL DEFAULT 0,
    failed          integer NOT NULL DEFAULT 0,
    chunks          integer NOT NULL DEFAULT 0,
    chunks_done     integer NOT NULL DEFAULT 0 CHECK (chunks_done <= chunks OR status = 'receiving'),
    bytes           bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    completed_at    timestamptz
);
CREATE UNIQUE INDEX product_imports_key ON product_imports (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX product_imports_status ON product_imports (status, created_at);

CREATE TABLE product_import_lines (
    import_id uuid NOT NULL REFERENCES product_imports (id) ON DELETE CASCADE,
    line      integer NOT NULL,
    -- NULL when the line could not be kept (too long, not UTF-8): `refused` says why.
    body      text,
    refused   text,
    PRIMARY KEY (import_id, line)
);

CREATE TABLE product_import_errors (
    import_id uuid NOT NULL REFERENCES product_imports (id) ON DELETE CASCADE,
    line      integer NOT NULL,
    seq       integer NOT NULL,
    field     text,
    message   text NOT NULL,
    PRIMARY KEY (import_id, line, seq)
);
