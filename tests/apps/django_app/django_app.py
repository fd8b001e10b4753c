"""Django test app (WSGI), for `isolation interpreter`: settings, URLs and views in
one module.

Routes:
  GET /info            interpreter id, pid, Django version
  GET /cube?n=N        {"app": "django", "n": N, "cube": N**3, "interp_id": ...}
"""

import os

import _interpreters
import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="vivarium-test-only",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[],
    MIDDLEWARE=[],
    USE_TZ=True,
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
)

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


def interp_id() -> int:
    return int(_interpreters.get_current()[0])


def info(request):
    return JsonResponse(
        {"app": "django", "pid": os.getpid(), "interp_id": interp_id(), "version": django.get_version()}
    )


def cube(request):
    n = int(request.GET["n"])
    return JsonResponse({"app": "django", "n": n, "cube": n**3, "interp_id": interp_id()})


urlpatterns = [path("info", info), path("cube", cube)]

application = get_wsgi_application()
