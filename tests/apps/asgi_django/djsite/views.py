import os

import _interpreters
import django
from django.http import JsonResponse
from django.urls import reverse


def facts(request, kind):
    return {
        "framework": "django",
        "view": kind,
        "pid": os.getpid(),
        "interp_id": int(_interpreters.get_current()[0]),
        "gil": _interpreters.get_config(_interpreters.get_current()[0]).gil,
        "version": django.get_version(),
        "file": django.__file__,
        "script_name": request.META.get("SCRIPT_NAME"),
        "path": request.path,
        "path_info": request.path_info,
        "reverse": reverse(f"{kind}-info"),
        "method": request.method,
        "body": request.body.decode("utf-8", "replace"),
    }


async def async_info(request):
    return JsonResponse(facts(request, "async"))


def sync_info(request):
    return JsonResponse(facts(request, "sync"))
