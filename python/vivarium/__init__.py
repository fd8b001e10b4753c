"""Vivarium: Caddy serving Python web apps from PEP 684 subinterpreters.

This package is Caddy with its standard modules and the Vivarium plugin, built
as the extension module `vivarium._caddy`: `vivarium ARGS` (or `python -m
vivarium ARGS`) is `caddy ARGS`, run inside this python process, whose
interpreter is the one embedded. Apps' venvs need only be made with the same
Python X.Y.
"""

from __future__ import annotations

import os
import sys

__version__ = "0.1.0"

# Not typing's: _isolated.py loads this module into the main interpreter, the
# parent of every app interpreter, which should import no more than it needs.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

# Caddy's commands that replace its own executable would replace python here.
_PIP_MANAGES = ("upgrade", "add-package", "remove-package")


def _program() -> str:
    """What `vivarium start` runs again as `vivarium run`: the console script
    when that is how we were called, else the one pip put beside python."""
    here = sys.argv[0] if sys.argv else ""
    if os.path.basename(here) == "vivarium" and os.access(here, os.X_OK):
        return os.path.abspath(here)
    beside = os.path.join(os.path.dirname(sys.executable), "vivarium")
    return beside if os.access(beside, os.X_OK) else "vivarium"


def main(argv: list[str] | None = None) -> NoReturn:
    """Runs the caddy command line `argv` (default: this process's arguments).

    The process becomes `python -I -S -X utf8` first (vivarium/_isolated.py), as
    bin/caddy starts its Python: isolated from PYTHON* variables and without
    site, so that no app interpreter sees this environment's site-packages or
    runs its .pth files, and an app's sys.path is its working_dir, the standard
    library and its own venv; in UTF-8 mode, so that file names and open() use
    UTF-8 whatever the locale. The pid stays the same."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in _PIP_MANAGES:
        sys.exit(
            f"vivarium {args[0]}: Caddy's plugins are built into this package; "
            "install another version with pip (pip install -U vivarium), or build "
            "a Caddy of your own with xcaddy (see README)"
        )
    stage = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_isolated.py")
    if not sys.executable:
        sys.exit("vivarium: this Python does not know its executable (sys.executable is empty)")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-I", "-S", "-X", "utf8", stage, _program(), *args])
