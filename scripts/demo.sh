#!/usr/bin/env bash
# Prepares and serves the Vivarium demo (examples/Caddyfile).
#
#   scripts/demo.sh setup   make each example app's venv, install its requirements when
#                           they changed, migrate Django, collect its static files and
#                           create the demo superuser admin/admin if missing
#   scripts/demo.sh serve   setup, then run bin/caddy with examples/Caddyfile
#   scripts/demo.sh run     run bin/caddy with examples/Caddyfile, no setup
#   scripts/demo.sh start   migrate Django's database and create the superuser if
#                           missing, then run bin/caddy: for a prepared tree whose
#                           database may be new (the Docker image's command). Makes no
#                           venv and installs nothing; fails when setup has not run.
#
# None builds anything: `make build` (or `make run`, which builds then serves) makes
# bin/caddy. Works from any directory; every step is idempotent.
#
# Environment:
#   PYTHON          the Python >= 3.13 to make the venvs with; found by
#                   scripts/find-python.sh when unset. Must be the Python bin/caddy
#                   was built against (same X.Y), or the wheel's (VIVARIUM_BIN).
#   VIVARIUM_BIN    the Caddy binary to run (default: bin/caddy in the repository)
#   VIVARIUM_PORT   the port to serve on (default 8080; read by examples/Caddyfile)
#   VIVARIUM_ADMIN_PORT  the port of Caddy's admin endpoint on localhost (default 2019)
#   DJANGO_SUPERUSER_USERNAME / _PASSWORD / _EMAIL   the demo superuser
#                   (default admin / admin / admin@example.com)
#   DJANGO_SQLITE_PATH   where the Django demo keeps its database
#                   (default examples/django/db.sqlite3); its directory is created
#                   when missing
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

EXAMPLES=examples
APPS=(flask django starlette fastapi)

log() { printf 'demo: %s\n' "$*" >&2; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

find_python() {
	# It only makes venvs: a Python of the server's X.Y that runs will do, with
	# or without headers (the python of the wheel's venv, for one).
	if [ -n "${PYTHON:-}" ] && "$PYTHON" -c '' 2>/dev/null; then
		export PYTHON
		return
	fi
	local found
	found=$(scripts/find-python.sh) || die "no usable Python; see README.md, \"Prerequisites\""
	PYTHON=$found
	export PYTHON
}

# Prints X.Y of the given Python, or nothing when it does not run.
py_version() {
	"$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}

# make_venv DIR: DIR/.venv exists, runs, and has the same X.Y as $PYTHON (the embedded
# interpreter can only load packages built for its own version). A venv that fails
# any of that is made again from scratch.
make_venv() {
	local dir=$1 venv=$1/.venv want have
	want=$(py_version "$PYTHON")
	if [ -e "$venv" ]; then
		have=$(py_version "$venv/bin/python")
		if [ "$have" != "$want" ]; then
			log "$venv is for Python ${have:-?}, not $want: recreating it"
			rm -rf "$venv"
		fi
	fi
	if [ ! -x "$venv/bin/python" ]; then
		log "creating $venv with $PYTHON"
		"$PYTHON" -m venv "$venv"
	fi
}

# install_requirements DIR: pip-installs DIR/requirements.txt into DIR/.venv unless
# that exact file was installed there already (a copy of it is the stamp).
install_requirements() {
	local dir=$1 venv=$1/.venv
	local req=$dir/requirements.txt stamp=$venv/.requirements.installed
	if [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then
		return 0
	fi
	log "installing $req into $venv"
	"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
	cp "$req" "$stamp"
}

DJANGO_DIR=$EXAMPLES/django
MANAGE=("$DJANGO_DIR/.venv/bin/python" "$DJANGO_DIR/manage.py")

# migrate_django: the database is migrated and has the demo superuser.
migrate_django() {
	local manage=("${MANAGE[@]}")
	if [ -n "${DJANGO_SQLITE_PATH:-}" ]; then
		mkdir -p "$(dirname "$DJANGO_SQLITE_PATH")"
	fi

	log "django: migrate ${DJANGO_SQLITE_PATH:-$DJANGO_DIR/db.sqlite3}"
	"${manage[@]}" migrate --noinput --verbosity 0

	# createsuperuser --noinput reads DJANGO_SUPERUSER_*; they are given to these two
	# commands only, so the password does not end up in Caddy's environment.
	local su=(env
		"DJANGO_SUPERUSER_USERNAME=${DJANGO_SUPERUSER_USERNAME:-admin}"
		"DJANGO_SUPERUSER_PASSWORD=${DJANGO_SUPERUSER_PASSWORD:-admin}"
		"DJANGO_SUPERUSER_EMAIL=${DJANGO_SUPERUSER_EMAIL:-admin@example.com}")
	local user=${DJANGO_SUPERUSER_USERNAME:-admin} rc=0
	# Exit status 3 means "no such user"; the name comes from the environment, so any
	# name is safe to use.
	"${su[@]}" "${manage[@]}" shell --verbosity 0 --command '
import os, sys
from django.contrib.auth import get_user_model
User = get_user_model()
name = os.environ["DJANGO_SUPERUSER_USERNAME"]
sys.exit(0 if User.objects.filter(**{User.USERNAME_FIELD: name}).exists() else 3)
' || rc=$?
	case $rc in
	0) ;;
	3)
		log "django: creating superuser $user"
		"${su[@]}" "${manage[@]}" createsuperuser --noinput --verbosity 0
		;;
	*) die "django: checking for superuser $user failed (exit $rc)" ;;
	esac
}

setup_django() {
	migrate_django
	log "django: collectstatic into $DJANGO_DIR/staticfiles"
	"${MANAGE[@]}" collectstatic --noinput --verbosity 0
}

setup() {
	find_python
	log "using $PYTHON ($(py_version "$PYTHON"))"
	local app
	for app in "${APPS[@]}"; do
		make_venv "$EXAMPLES/$app"
		install_requirements "$EXAMPLES/$app"
	done
	setup_django
	log "setup done"
}

# start: for a tree that setup prepared (the Docker image) whose database may be new
# or older than the code: migrate, then run. Installs nothing.
start() {
	local app
	for app in "${APPS[@]}"; do
		[ -x "$EXAMPLES/$app/.venv/bin/python" ] ||
			die "$EXAMPLES/$app/.venv is missing; run '$0 setup' first"
	done
	migrate_django
	run
}

run() {
	local bin=${VIVARIUM_BIN:-bin/caddy}
	[ -x "$bin" ] || die "$bin not found; build it with 'make build' (or use 'make run')"
	local port=${VIVARIUM_PORT:-8080}
	log "serving http://localhost:$port/ with /flask/, /django/, /django/admin/, /starlette/" \
		"and /fastapi/ (user ${DJANGO_SUPERUSER_USERNAME:-admin}); Ctrl-C stops"
	# The superuser's password is for createsuperuser only, not for Caddy and the apps.
	unset DJANGO_SUPERUSER_PASSWORD
	exec "$bin" run --config "$EXAMPLES/Caddyfile" --adapter caddyfile
}

case ${1:-} in
setup) setup ;;
serve) setup; run ;;
run) run ;;
start) start ;;
*)
	echo "usage: $0 setup|serve|run|start" >&2
	exit 2
	;;
esac
