"""WSGI app that starts, at import, a non-daemon thread that runs for 2 s, then
prints "vivarium-stop brief thread done <instance>" and ends."""

import threading
import time
import uuid

from thread_apps import make_app

INSTANCE = uuid.uuid4().hex
THREAD_NAME = "vivarium-stop-brief-thread"


def run_briefly():
    time.sleep(2)
    print(f"vivarium-stop brief thread done {INSTANCE}", flush=True)


_thread = threading.Thread(target=run_briefly, name=THREAD_NAME)
_thread.start()

app = make_app(INSTANCE, _thread)
