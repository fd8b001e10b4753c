"""Run once in the main interpreter, at start-up, before any app interpreter.

Since 3.13, CPython runs the init function of every extension module an app
interpreter imports in the main interpreter first, and a single-phase one does
its work there (gh-117953). Such functions import too: cffi's generated modules
import `_cffi_backend`, mypyc's and protobuf's import their package, Cython's
import greenlet. The main interpreter's sys.path holds only the standard
library, so those imports failed, and the app was told "No module named
'_cffi_backend'" instead of why the module refuses its interpreter; with
`isolation shared` such modules could not load at all; and on 3.13.0 the
exception, made in the main interpreter's allocator and freed in the app's,
aborted the process (docs/python-versions.md).

So, on the thread that imports an app (each app boots on a thread of its
own) and only while it does, imports in the main interpreter may also look in
that app's sys.path, and what they bring in is forgotten again when the boot
ends. An error such an init function
raises reaches the app only as "failed to import from subinterpreter due to
exception", the real one going to the main interpreter's sys.unraisablehook:
it is kept for the booting app to report.
"""

from __future__ import annotations

import sys
import threading
import traceback
from importlib.machinery import ModuleSpec, PathFinder
from types import ModuleType
from typing import Any, Sequence

import _vivarium

# CPython's words when it reports an init function's error to the main interpreter.
_INIT_FAILURE = "Exception while importing from subinterpreter"

# What BootPathFinder found, per booting thread.
_found: dict[int, list[str]] = {}


class BootPathFinder:
    """Last on the main interpreter's sys.meta_path: top-level modules from the
    sys.path of the app interpreter that is booting."""

    @classmethod
    def find_spec(
        cls, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if path is not None:
            return None
        entries = _vivarium.shared_path()  # None unless this thread boots an app
        if not entries:
            return None
        spec = PathFinder.find_spec(name, entries, target)
        if spec is not None:
            _found.setdefault(threading.get_ident(), []).append(name)
        return spec


def boot_ended() -> None:
    """Called by the runtime after each app boot: the modules found for it leave
    the main interpreter's sys.modules (another app may have other versions)."""
    found = _found.pop(threading.get_ident(), [])
    while found:
        name = found.pop()
        prefix = name + "."
        for key in [k for k in sys.modules if k == name or k.startswith(prefix)]:
            del sys.modules[key]


_default_unraisablehook = sys.unraisablehook


def _unraisablehook(info: Any) -> None:
    if (info.err_msg or "").startswith(_INIT_FAILURE) and _vivarium.shared_path() is not None:
        text = "".join(traceback.format_exception_only(info.exc_type, info.exc_value)).strip()
        _vivarium.note_init_failure(text)
        return
    _default_unraisablehook(info)


sys.meta_path.append(BootPathFinder)
sys.unraisablehook = _unraisablehook
