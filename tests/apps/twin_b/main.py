"""Twin B: same module name ("main") and attribute ("app") as the other twin.

Two python blocks pointing at main:app in different working_dirs must be two
different apps.
"""

import json

import _interpreters

WHO = "twin B"


def app(environ, start_response):
    body = json.dumps(
        {"who": WHO, "interp_id": int(_interpreters.get_current()[0]),
         "path_info": environ.get("PATH_INFO", "")}
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
