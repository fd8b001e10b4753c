"""Django's own ASGI handler. The settings module is assigned, not setdefault: the
environment is shared by every interpreter of the process (see README, Limits)."""

import os

os.environ["DJANGO_SETTINGS_MODULE"] = "djsite.settings"

from django.core.asgi import get_asgi_application  # noqa: E402

application = get_asgi_application()
