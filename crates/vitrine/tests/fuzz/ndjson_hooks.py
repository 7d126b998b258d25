"""Schemathesis hooks of the API fuzzing run (crates/vitrine/tests/suite/openapi.rs).

The product import's body is documented as an array of products sent as NDJSON
(`application/x-ndjson`, one product per line); schemathesis has no serializer for that media
type, so generated arrays are written one JSON document per line here.
"""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    items = value if isinstance(value, list) else [value]
    return {"data": "".join(json.dumps(item) + "\n" for item in items).encode("utf8")}
