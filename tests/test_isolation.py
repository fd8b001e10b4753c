"""Each `python` block is its own app in its own own-GIL subinterpreter of one process:
its own sys.path, venv, sys.modules and module globals."""

import os
import uuid

import pytest

from support import app_dir, python_block, venv_site_packages

SIX_NEW = "1.16.0"
SIX_OLD = "1.15.0"


@pytest.fixture(scope="module")
def venvs(make_venv):
    return {
        "new": make_venv("six-new", [f"six=={SIX_NEW}"]),
        "old": make_venv("six-old", [f"six=={SIX_OLD}"]),
    }


@pytest.fixture(scope="module")
def server(caddy_launcher, venvs):
    probe = app_dir("probe")
    body = "\n".join(
        [
            python_block("/new/*", "probe:app", working_dir=probe, venv=venvs["new"]),
            python_block("/old/*", "probe:app", working_dir=probe, venv=venvs["old"]),
            python_block("/bare/*", "probe:app", working_dir=probe),
            python_block("/twin-a/*", "main:app", working_dir=app_dir("twin_a")),
            python_block("/twin-b/*", "main:app", working_dir=app_dir("twin_b")),
        ]
    )
    caddy = caddy_launcher.start(body)
    yield caddy
    caddy.stop()


def test_each_app_sees_only_the_package_version_in_its_own_venv(server, venvs, python_version):
    new = server.get_json("/new/import", params={"name": "six"})
    old = server.get_json("/old/import", params={"name": "six"})

    assert new["ok"] and new["version"] == SIX_NEW, new
    assert old["ok"] and old["version"] == SIX_OLD, old
    new_site = os.path.realpath(venv_site_packages(venvs["new"], python_version))
    old_site = os.path.realpath(venv_site_packages(venvs["old"], python_version))
    assert os.path.realpath(new["file"]).startswith(new_site + os.sep), new
    assert os.path.realpath(old["file"]).startswith(old_site + os.sep), old


def test_an_app_without_venv_cannot_import_packages_of_other_apps(server):
    bare = server.get_json("/bare/import", params={"name": "six"})
    assert bare["ok"] is False, f"six leaked into an app without a venv: {bare}"


def test_module_globals_set_by_one_app_are_invisible_to_the_other(server):
    value = "set-by-new-" + uuid.uuid4().hex
    before_old = server.get_json("/old/global")["value"]

    response = server.post("/new/global", content=value.encode())
    assert response.status_code == 200, response.text

    assert server.get_json("/new/global")["value"] == value
    assert server.get_json("/old/global")["value"] == before_old == "unset"
    assert server.get_json("/bare/global")["value"] == "unset"


def test_apps_share_the_process_but_not_the_interpreter(server):
    infos = {name: server.get_json(f"/{name}/info") for name in ("new", "old", "bare")}
    twins = {name: server.get_json(f"/{name}/") for name in ("twin-a", "twin-b")}

    assert {info["pid"] for info in infos.values()} == {server.pid}
    ids = [info["interp_id"] for info in infos.values()] + [t["interp_id"] for t in twins.values()]
    assert len(set(ids)) == len(ids), f"apps share an interpreter: {ids}"
    assert 0 not in ids, f"an app runs in the main interpreter: {ids}"
    # main interpreter + one per block (interpreters defaults to 1)
    assert infos["new"]["interp_count"] >= len(ids) + 1, infos["new"]


def test_sys_path_is_working_dir_then_stdlib_then_own_venv(
    server, venvs, python_version, outside_site_packages
):
    probe = os.path.realpath(app_dir("probe"))
    own_venv = os.path.realpath(venvs["new"])
    own_site = os.path.realpath(venv_site_packages(venvs["new"], python_version))
    entries = [os.path.realpath(p) if p else p for p in server.get_json("/new/info")["sys_path"]]

    assert entries[0] == probe, f"working_dir is not first on sys.path: {entries}"
    assert own_site in entries, f"venv site-packages missing from sys.path: {entries}"
    stdlib_index = next(
        (i for i, p in enumerate(entries) if os.path.isfile(os.path.join(p, "os.py"))), None
    )
    assert stdlib_index is not None, f"no stdlib directory on sys.path: {entries}"
    assert stdlib_index < entries.index(own_site), f"venv comes before stdlib: {entries}"

    for entry in entries:
        assert entry, f"empty entry (current directory) on sys.path: {entries}"
        for outside in outside_site_packages:
            assert not (entry == outside or entry.startswith(outside + os.sep)), (
                f"{entry} (outside site-packages {outside}) is on the app's sys.path"
            )
        if "site-packages" in entry:
            assert entry.startswith(own_venv + os.sep), f"foreign site-packages {entry}"


def test_an_app_without_venv_has_no_site_packages_at_all(server, outside_site_packages):
    info = server.get_json("/bare/info")
    entries = [os.path.realpath(p) for p in info["sys_path"]]
    assert entries[0] == os.path.realpath(app_dir("probe")), entries
    assert not [p for p in entries if "site-packages" in p], entries
    # pip lives in the base Python's site-packages and pytest/httpx in the test
    # runner's: the app must import neither.
    for name in ("pip", "pytest", "httpx"):
        result = server.get_json("/bare/import", params={"name": name})
        assert result["ok"] is False, f"{name} importable from an isolated app: {result}"


def test_same_module_name_in_different_working_dirs_is_two_apps(server):
    a = server.get_json("/twin-a/hello")
    b = server.get_json("/twin-b/hello")
    assert a["who"] == "twin A"
    assert b["who"] == "twin B"
    assert a["interp_id"] != b["interp_id"]
    assert a["path_info"] == b["path_info"] == "/hello"


def test_pth_files_in_the_venv_are_processed(start_caddy, make_venv, python_version):
    venv = make_venv("with-pth", [])
    site_dir = venv_site_packages(venv, python_version)
    (site_dir / "vivarium_test.pth").write_text(str(app_dir("pth_target")) + "\n")
    server = start_caddy(python_block("/*", "probe:app", working_dir=app_dir("probe"), venv=venv))
    found = server.get_json("/import", params={"name": "pth_target_mod"})
    assert found["ok"], found
    assert os.path.realpath(found["file"]) == os.path.realpath(
        app_dir("pth_target") / "pth_target_mod.py"
    )
