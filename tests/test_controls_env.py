"""`env NAME value` and `env_file PATH`: an app's own environment variables. The app's
os.environ and os.getenv see them, `env` over `env_file`; other apps in the same
process do not, and neither does the process environment (C code's getenv())."""

import pytest

from controls_support import KINDS, block, env_of
from support import q

NAMES = ("VV_SHARED", "VV_ONLY_A", "VV_FROM_FILE", "VV_OVERRIDDEN", "VV_QUOTED")


@pytest.fixture
def env_file(tmp_path):
    path = tmp_path / "app.env"
    path.write_text(
        "# what app A's dotenv file sets\n"
        "export VV_FROM_FILE=file-value\n"
        "VV_OVERRIDDEN=from-the-file\n"
        "VV_QUOTED=\"two\\nlines\" # a comment\n"
    )
    return path


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("isolation", ["interpreter", "shared", "main"])
def test_each_app_sees_its_own_variables_and_the_process_environment_stays(
    start_caddy, env_file, kind, isolation
):
    server = start_caddy("\n".join([
        block("/a/*", kind, "env VV_SHARED for-a", "env VV_ONLY_A only-a", "env VV_OVERRIDDEN from-env",
              f"env_file {q(env_file)}", isolation=isolation),
        block("/b/*", "wsgi", "env VV_SHARED for-b"),
        block("/c/*", "asgi"),
    ]))

    a, b, c = (env_of(server, prefix, *NAMES) for prefix in ("/a", "/b", "/c"))

    def seen(env, name):
        environ, getenv, c_getenv = env[name]
        assert environ == getenv, (name, env[name])
        assert c_getenv is None, f"{name} reached the process environment: {env[name]}"
        return environ

    assert seen(a, "VV_SHARED") == "for-a"
    assert seen(a, "VV_ONLY_A") == "only-a"
    assert seen(a, "VV_FROM_FILE") == "file-value"
    assert seen(a, "VV_OVERRIDDEN") == "from-env", "env must win over env_file"
    assert seen(a, "VV_QUOTED") == "two\nlines"
    assert seen(b, "VV_SHARED") == "for-b"
    for name in NAMES:
        if name != "VV_SHARED":
            assert seen(b, name) is None, (name, b[name])
        assert seen(c, name) is None, (name, c[name])


def test_a_reload_in_the_main_interpreter_drops_the_old_instances_variables(start_caddy):
    def config(*lines):
        return "\n".join([block("/m/*", "wsgi", *lines, isolation="main"), block("/o/*", "wsgi")])

    server = start_caddy(config("env VV_OLD old", "env VV_KEPT first"))
    assert env_of(server, "/m", "VV_OLD", "VV_KEPT")["VV_OLD"][0] == "old"

    server.reload(config("env VV_KEPT second"))

    env = env_of(server, "/m", "VV_OLD", "VV_KEPT")
    assert env["VV_OLD"] == [None, None, None], env
    assert env["VV_KEPT"][:2] == ["second", "second"], env
    assert env_of(server, "/o", "VV_KEPT")["VV_KEPT"] == [None, None, None]


def test_a_missing_env_file_is_refused_naming_the_app_and_the_file(caddy_must_refuse, tmp_path):
    missing = tmp_path / "no.env"
    failure = caddy_must_refuse(block("/*", "wsgi", f"env_file {q(missing)}"))
    assert failure.returncode != 0
    assert "controls_app:app" in failure.output, failure.output
    assert str(missing) in failure.output, failure.output


def test_a_bad_env_file_line_is_refused_naming_the_file_and_line(caddy_must_refuse, tmp_path):
    path = tmp_path / "bad.env"
    path.write_text("GOOD=1\n# fine\nNOT A VARIABLE\n")
    failure = caddy_must_refuse(block("/*", "wsgi", f"env_file {q(path)}"))
    assert failure.returncode != 0
    assert f"{path}:3" in failure.output, failure.output
    assert "NAME=value" in failure.output, failure.output


def test_env_needs_a_name_and_a_value(caddy_must_refuse):
    failure = caddy_must_refuse(block("/*", "wsgi", "env ONLY_A_NAME"))
    assert failure.returncode != 0
    assert "env takes a name and a value" in failure.output, failure.output
