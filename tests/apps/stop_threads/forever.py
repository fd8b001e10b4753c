"""WSGI app that starts, at import, a non-daemon thread that never ends."""

import threading
import time
import uuid

from thread_apps import make_app

INSTANCE = uuid.uuid4().hex
THREAD_NAME = "vivarium-stop-forever-thread"


def loop_forever():
    while True:
        time.sleep(0.05)


_thread = threading.Thread(target=loop_forever, name=THREAD_NAME)
_thread.start()

app = make_app(INSTANCE, _thread)
