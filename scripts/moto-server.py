"""Starts moto's SNS/SQS server (the emulator the tests and the local stack use) with one fix.

moto decides whether each SQS message is visible by building a datetime for "now", once per
message per look at a queue, and every send looks at the whole queue three times (to fill in
queue attributes it then ignores). A queue holding a few thousand messages thus slows every send
and receive to a crawl (measured: 15 sends/s at 3,000 messages, 305/s with this fix), which real
SQS does not do. The fix reads the clock with time.time() instead, the same instant in
milliseconds; nothing else changes. Arguments are moto_server's own (-H HOST -p PORT).
"""

import sys
import time

import moto.sqs.models as sqs_models
from moto.server import main

_unix_time_millis = sqs_models.unix_time_millis


def _now_millis(dt=None):
    return time.time() * 1000.0 if dt is None else _unix_time_millis(dt)


sqs_models.unix_time_millis = _now_millis

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
