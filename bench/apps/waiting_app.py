"""The app of bench/metrics_chart.py: each request computes for about a millisecond and
then waits four, as on a database, so the scheduler lets an interpreter run several
requests at once (its threads wait rather than compute)."""

import time

from work import burn

CPU_LOOPS = 16_000  # about 1 ms of pure Python (work.CPU_LOOPS is about 5 ms)
WAIT_SECONDS = 0.004


def app(environ, start_response):
    burn(CPU_LOOPS)
    time.sleep(WAIT_SECONDS)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
