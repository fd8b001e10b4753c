"""WSGI entry point: examples/Caddyfile serves ``demo_site.wsgi:application``.

Under Vivarium every app shares one process environment, and an interpreter's
os.environ starts as a copy of it. The usual ``os.environ.setdefault(...)`` would let a
DJANGO_SETTINGS_MODULE set by another Django project in the same Caddy win, so this
file assigns it: the assignment changes this interpreter's os.environ, which is what
Django reads.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ["DJANGO_SETTINGS_MODULE"] = "demo_site.settings"

application = get_wsgi_application()
