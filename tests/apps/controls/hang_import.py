"""Does not finish importing: spins in Python for ever (HANG=spin, the default), or
sleeps HANG_SECONDS in a call that does not return to Python (HANG=sleep)."""

import os
import time


def spin_at_import():
    while True:
        pass


if os.environ.get("HANG", "spin") == "sleep":
    time.sleep(float(os.environ.get("HANG_SECONDS", "3600")))
else:
    spin_at_import()


def app(environ, start_response):
    raise AssertionError("never imported")
