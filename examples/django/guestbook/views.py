import os
import sys

import django
from django import get_version
from django.shortcuts import redirect, render

from .forms import NoteForm
from .models import Note

try:  # CPython's private module; present on 3.13+, the versions Vivarium supports
    import _interpreters
except ImportError:  # pragma: no cover
    _interpreters = None


def note_list(request):
    """Lists the latest notes; POST adds one (then redirects, so reload is safe)."""
    if request.method == "POST":
        form = NoteForm(request.POST)
        if form.is_valid():
            form.save()
            return redirect("guestbook:note_list")
    else:
        form = NoteForm()
    return render(
        request,
        "guestbook/note_list.html",
        {
            "form": form,
            "notes": Note.objects.all()[:50],
            "note_count": Note.objects.count(),
            "runtime": {
                "interpreter_id": _interpreters.get_current()[0] if _interpreters else None,
                "pid": os.getpid(),
                "python": sys.version.split()[0],
                "sys_prefix": sys.prefix,
                "django_version": get_version(),
                "django_location": os.path.dirname(django.__file__),
                "script_name": request.META.get("SCRIPT_NAME", ""),
            },
        },
    )
