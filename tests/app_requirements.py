"""Pinned requirements of the third-party test apps' venvs (built by `make_venv`,
cached by a hash of these lines, so test modules sharing a list share the venv)."""

FASTAPI = ["fastapi==0.165.0", "pydantic==2.14.3", "starlette==1.10.0"]
FLASK = ["Flask==3.1.3"]
DJANGO = ["Django==6.1.3"]
SIX = ["six==1.16.0"]  # the same venv as test_isolation.py's "six-new"

# One venv holding every package whose support tests/test_package_support.py checks.
PACKAGE_SUPPORT = [
    "Flask==3.1.3",
    "Django==6.1.3",
    "starlette==1.10.0",
    "fastapi==0.165.0",
    "pydantic==2.14.3",
    "orjson==3.13.0",
    "numpy==2.5.5",
    "SQLAlchemy==2.1.9",
    "Jinja2==3.1.6",
    "psycopg[binary]==3.3.9",
    "requests==2.34.2",
    "httpx==0.28.1",
]
