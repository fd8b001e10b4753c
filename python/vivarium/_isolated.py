"""The second stage of `vivarium`: `python -I -S _isolated.py PROGRAM ARGS...`
(see vivarium.main) hands the command line to Caddy in this process."""

import os
import sys

if not (sys.flags.isolated and sys.flags.no_site):
    sys.exit("vivarium/_isolated.py runs under python -I -S only; use the vivarium command")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from vivarium import _caddy  # noqa: E402

del sys.path[0]
_caddy.main(sys.argv[1:])
