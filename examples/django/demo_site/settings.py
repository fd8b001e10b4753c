"""Settings for the Django demo served by Vivarium under /django.

Caddy passes SCRIPT_NAME=/django (from ``handle_path /django/* { python {...} }``), so reverse() and
{% url %} produce /django/... links without FORCE_SCRIPT_NAME. Static files are not
served by Django: ``manage.py collectstatic`` copies them to STATIC_ROOT and Caddy's
file_server answers /django/static/*.

Every setting a deployment would change comes from an environment variable with a
demo default.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# Demo default only. Set DJANGO_SECRET_KEY for anything reachable by others.
SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "vivarium-demo-insecure-key-do-not-use-in-production"
)

DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"

ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

# Only needed when the app is reached without the server telling it its mount point,
# e.g. management commands that build absolute URLs. Empty means "trust SCRIPT_NAME".
FORCE_SCRIPT_NAME = os.environ.get("DJANGO_FORCE_SCRIPT_NAME") or None

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "guestbook",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "demo_site.wsgi.application"

# SQLite file; DJANGO_SQLITE_PATH moves it (a relative path is taken from the
# current directory, which under Vivarium is Caddy's, so prefer an absolute one).
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": Path(os.environ.get("DJANGO_SQLITE_PATH") or BASE_DIR / "db.sqlite3"),
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Absolute, so it is the same whatever SCRIPT_NAME the request carries; Caddy serves
# this prefix from STATIC_ROOT (see handle_path /django/static/* in examples/Caddyfile).
STATIC_URL = "/django/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Django's default logging drops request errors when DEBUG is off (it only mails
# admins). Send them to stderr instead: Vivarium puts an app's stderr into Caddy's log.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "django": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
