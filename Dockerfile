# The Vivarium demo (examples/Caddyfile: Flask, Django, Starlette and FastAPI in one
# Caddy process) as an image:
#
#   docker compose up --build              (compose.yaml: port, volumes, health check)
#   docker build -t vivarium-demo .        (or by hand)
#   docker build --build-arg PYTHON_VERSION=3.15 -t vivarium-demo:py3.15 .
#
# Two stages on the same official Python image. The build stage compiles bin/caddy
# against that image's libpython (`make build`) and prepares the demo with the same
# script as `make run` (`scripts/demo.sh setup`: a venv per app, Django's static
# files). The runtime stage gets the binary, the scripts and the prepared examples at
# the same paths (venvs hold absolute paths), runs as an unprivileged user and, at
# each start, migrates the Django database on its volume and runs Caddy
# (`scripts/demo.sh start`).

# 3.14 (recommended) or 3.15: Vivarium refuses 3.13 (docs/python-versions.md).
ARG PYTHON_VERSION=3.14
ARG GO_VERSION=1.26

# Only its Go toolchain is used. A stage, because COPY --from does not expand
# build arguments and a FROM line does.
FROM golang:${GO_VERSION}-bookworm AS go

# ---------------------------------------------------------------------------- build
FROM python:${PYTHON_VERSION}-slim-bookworm AS build

# cgo needs a C compiler and libc headers; the image has Python's own headers,
# python3.X-config and the shared libpython (it is built with --enable-shared).
# hadolint ignore=DL3008
RUN apt-get update \
	&& apt-get install -y --no-install-recommends gcc libc6-dev make \
	&& rm -rf /var/lib/apt/lists/*

COPY --from=go /usr/local/go /usr/local/go
ENV PATH=/usr/local/go/bin:$PATH

# The same path as in the runtime stage: the venvs made here refer to it.
WORKDIR /app

# Go modules first, so that a change to the code does not download them again.
COPY go.mod go.sum ./
RUN go mod download

COPY . .

# scripts/find-python.sh picks the image's /usr/local/bin/python3.X and its
# python3.X-config; the binary's rpath points at /usr/local/lib.
RUN make build

# The demo's venvs (from each examples/*/requirements.txt, from PyPI) and Django's
# collected static files. Its migrate and superuser steps write a throwaway
# database here; the real one lives on a volume and is migrated at start.
RUN DJANGO_SQLITE_PATH=/tmp/setup-db.sqlite3 scripts/demo.sh setup \
	&& rm -f /tmp/setup-db.sqlite3

# -------------------------------------------------------------------------- runtime
FROM python:${PYTHON_VERSION}-slim-bookworm

# An unprivileged user, and the directories it writes: Caddy's data and config
# (XDG_DATA_HOME, XDG_CONFIG_HOME) and the Django database. They are made and
# owned before VOLUME, so new named volumes start with this owner.
RUN groupadd --system --gid 10001 vivarium \
	&& useradd --system --uid 10001 --gid vivarium --no-log-init \
		--home-dir /home/vivarium --create-home --shell /usr/sbin/nologin vivarium \
	&& mkdir -p /data /config /var/lib/vivarium \
	&& chown vivarium:vivarium /data /config /var/lib/vivarium

WORKDIR /app
# Owned by root: the app user reads and runs them, and cannot change them.
COPY --from=build /app/bin/caddy bin/caddy
COPY --from=build /app/scripts scripts
COPY --from=build /app/examples examples

ENV XDG_DATA_HOME=/data \
	XDG_CONFIG_HOME=/config \
	DJANGO_SQLITE_PATH=/var/lib/vivarium/db.sqlite3 \
	VIVARIUM_PORT=8080

# Numeric, so that a runtime can tell it is not root without reading /etc/passwd.
USER 10001:10001
VOLUME ["/data", "/config", "/var/lib/vivarium"]
EXPOSE 8080

# The static index page at / answers once Caddy has loaded every app.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
	CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/' % os.environ.get('VIVARIUM_PORT', '8080'), timeout=4)"]

# Migrates the database (a new volume gets the tables and the demo superuser, by
# default admin/admin: DJANGO_SUPERUSER_USERNAME/_PASSWORD/_EMAIL), then runs
# Caddy in place of the script. Caddy stops cleanly on SIGTERM; ASGI requests in
# flight get up to 25 s, hence the longer stop timeout in compose.yaml.
CMD ["scripts/demo.sh", "start"]
