"""Pinned requirements of the third-party test apps' venvs (built by `make_venv`,
cached by a hash of these lines, so test modules sharing a list share the venv)."""

FASTAPI = ["fastapi==0.165.0", "pydantic==2.14.3", "starlette==1.10.0"]
FLASK = ["Flask==3.1.3"]
DJANGO = ["Django==6.1.3"]
UVLOOP = ["uvloop==0.23.0"]
SIX = ["six==1.16.0"]  # the same venv as test_isolation.py's "six-new"

# One venv holding every package of tests/test_package_support.py's census.
CENSUS = [
    "Flask==3.1.3",
    "Django==6.1.3",
    "starlette==1.10.0",
    "fastapi==0.165.0",
    "pydantic==2.14.3",
    "Jinja2==3.1.6",
    "httpx==0.28.1",
    "requests==2.34.2",
    "protobuf==7.36.2",
    "argon2-cffi==25.1.0",
    "brotlicffi==1.2.1.0",
    "cffi==2.1.1",
    "greenlet==3.5.6",
    "orjson==3.13.0",
    "pillow==13.0.0",
    "gevent==26.9.0",
    "charset-normalizer==3.5.3",
    "cryptography==50.0.2",
    "bcrypt==5.0.0",
    "lxml==6.1.3",
    "grpcio==1.85.3",
    "numpy==2.5.5",
    "SQLAlchemy==2.1.9",
    "psycopg[binary]==3.3.9",
]
# charset-normalizer 3.4.x beside the 3.5 of CENSUS.
CHARSET_34 = ["charset-normalizer==3.4.4"]
