"""The second stage of `vivarium`: `python -I -S -X utf8 _isolated.py PROGRAM
ARGS...` (see vivarium.main) hands the command line to Caddy in this process."""

import os
import sys

if not (sys.flags.isolated and sys.flags.no_site and sys.flags.utf8_mode):
    sys.exit("vivarium/_isolated.py runs under python -I -S -X utf8 only; use the vivarium command")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from vivarium import _caddy  # noqa: E402

del sys.path[0]
_caddy.main(sys.argv[1:])
