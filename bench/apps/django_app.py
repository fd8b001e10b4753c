"""A one-file Django project answering "Hello, world!" at /.

The module is its own settings module and URLconf. No database, and the
middleware a stateless site keeps (security, common, clickjacking).
"""

import os

# Assigned, not setdefault: the environment is shared by every app in the process.
os.environ["DJANGO_SETTINGS_MODULE"] = __name__

DEBUG = False
SECRET_KEY = "benchmark-only-not-secret"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = __name__
INSTALLED_APPS = []
DATABASES = {}
USE_TZ = True
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402

from work import HELLO  # noqa: E402


def hello(request):
    return HttpResponse(HELLO, content_type="text/plain")


urlpatterns = [path("", hello)]

application = get_wsgi_application()
