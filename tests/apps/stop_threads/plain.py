"""WSGI app that starts no thread."""

import uuid

from thread_apps import make_app

INSTANCE = uuid.uuid4().hex

app = make_app(INSTANCE, None)
