"""`isolation interpreter|shared|main`: apps whose extension modules refuse own-GIL
interpreters (FastAPI needs pydantic_core) run in the main interpreter or in a
subinterpreter sharing the main GIL, next to own-GIL apps in the same process.

Apps: tests/apps/fastapi_app (FastAPI), flask_app (Flask), django_app (Django), probe
(standard library). Their venvs are pinned in app_requirements.py.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import uuid

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

import app_requirements as reqs
from support import app_dir, python_block, tail, venv_site_packages, wait_until

FASTAPI_MODULE = "fastapi_app:app"


@pytest.fixture(scope="module")
def venvs(make_venv):
    return {
        "fastapi": make_venv("fastapi", reqs.FASTAPI),
        "flask": make_venv("flask", reqs.FLASK),
        "django": make_venv("django", reqs.DJANGO),
        "six": make_venv("six-new", reqs.SIX),
    }


def fastapi_block(matcher, venv, isolation, working_dir=None, **options):
    return python_block(
        matcher,
        module_asgi=FASTAPI_MODULE,
        lifespan="on",
        isolation=isolation,
        working_dir=working_dir or app_dir("fastapi_app"),
        venv=venv,
        **options,
    )


def site_of(venv, python_version) -> str:
    return os.path.realpath(venv_site_packages(venv, python_version))


# ------------------------------------------------- FastAPI in `main` and in `shared`


@pytest.fixture(scope="module", params=["main", "shared"])
def fastapi_server(request, caddy_launcher, venvs):
    """FastAPI at /fa/* with the isolation under test, next to the stdlib probe app in
    `isolation shared` with a venv holding only six, at /probe/*."""
    body = "\n".join(
        [
            fastapi_block("/fa/*", venvs["fastapi"], request.param),
            python_block(
                "/probe/*", "probe:app", isolation="shared",
                working_dir=app_dir("probe"), venv=venvs["six"],
            ),
        ]
    )
    caddy = caddy_launcher.start(body)
    caddy.mode = request.param
    yield caddy
    caddy.stop()


def test_fastapi_runs_in_the_interpreter_its_isolation_names(fastapi_server):
    info = fastapi_server.get_json("/fa/info")
    probe = fastapi_server.get_json("/probe/info")
    assert info["pid"] == probe["pid"] == fastapi_server.pid
    if fastapi_server.mode == "main":
        assert info["interp_id"] == 0, info
    else:
        assert info["interp_id"] != 0, info
    assert probe["interp_id"] not in (0, info["interp_id"]), (info, probe)


def test_pydantic_model_route_computes_the_answer(fastapi_server):
    response = fastapi_server.post(
        "/fa/items", json={"name": "pen", "price": 1.25, "quantity": 4, "tags": ["red", "blue"]}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "PEN" and body["total"] == 5.0 and body["tags"] == ["blue", "red"], body
    # defaults of the model apply
    default = fastapi_server.post("/fa/items", json={"name": "cap", "price": 2.5}).json()
    assert default["total"] == 2.5, default


def test_invalid_body_gets_422_with_pydantic_detail(fastapi_server):
    response = fastapi_server.post("/fa/items", json={"name": "", "price": -3, "quantity": "many"})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    where = {tuple(err["loc"]): err["type"] for err in detail}
    assert where == {
        ("body", "name"): "string_too_short",
        ("body", "price"): "greater_than",
        ("body", "quantity"): "int_parsing",
    }, detail

    not_json = fastapi_server.post(
        "/fa/items", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 422, not_json.text
    assert not_json.json()["detail"][0]["type"] == "json_invalid", not_json.text


def test_dependency_injection(fastapi_server):
    assert fastapi_server.get_json("/fa/whoami", headers={"X-Token": "t-alice"}) == {"user": "alice"}
    assert fastapi_server.get_json("/fa/whoami", headers={"X-Token": "t-bob"}) == {"user": "bob"}
    unknown = fastapi_server.get("/fa/whoami", headers={"X-Token": "nope"})
    assert unknown.status_code == 401 and unknown.json() == {"detail": "unknown token"}, unknown.text
    missing = fastapi_server.get("/fa/whoami")
    assert missing.status_code == 422, missing.text
    assert missing.json()["detail"][0]["loc"] == ["header", "x-token"], missing.text


def test_background_task_runs_after_the_response(fastapi_server):
    key, value = uuid.uuid4().hex, "recorded-" + uuid.uuid4().hex
    response = fastapi_server.post(f"/fa/tasks/{key}", params={"value": value})
    assert response.status_code == 200 and response.json() == {"queued": key}, response.text

    def recorded():
        r = fastapi_server.get(f"/fa/tasks/{key}")
        return r.json() if r.status_code == 200 else None

    result = wait_until(recorded, timeout=10)
    assert result is not None, f"background task never ran\n{tail(fastapi_server.log_text())}"
    assert result["value"] == value, result
    assert result["interp_id"] == fastapi_server.get_json("/fa/info")["interp_id"], result


def test_lifespan_startup_state_is_visible_in_routes(fastapi_server):
    state = fastapi_server.get_json("/fa/lifespan")
    info = fastapi_server.get_json("/fa/info")
    assert state["startups"] == 1, state
    assert re.fullmatch(r"[0-9a-f]{32}", state["token"] or ""), state
    assert state["started_in"] == info["interp_id"], (state, info)
    # the same state on every later request
    assert fastapi_server.get_json("/fa/lifespan") == state


def test_websocket_echo(fastapi_server):
    url = fastapi_server.base_url.replace("http://", "ws://") + "/fa/ws"
    with ws_connect(url, open_timeout=10, close_timeout=5) as ws:
        for n in range(5):
            ws.send(f"hello {n}")
            assert ws.recv(timeout=10) == f"echo:hello {n}"
        ws.send(b"\x00\x01\x02abc")
        assert ws.recv(timeout=10) == b"cba\x02\x01\x00"
    # the app still serves HTTP after the socket closed
    assert fastapi_server.get_json("/fa/info")["app"] == "fastapi"


def test_apps_outside_own_gil_interpreters_still_have_their_own_venv_and_sys_path(
    fastapi_server, venvs, python_version
):
    """The probe runs in `isolation shared` with a venv holding six; FastAPI (main or
    shared) has a venv holding FastAPI. Neither sees the other's packages."""
    fastapi_site = site_of(venvs["fastapi"], python_version)
    six_site = site_of(venvs["six"], python_version)

    six_in_probe = fastapi_server.get_json("/probe/import", params={"name": "six"})
    assert six_in_probe["ok"], six_in_probe
    assert os.path.realpath(six_in_probe["file"]).startswith(six_site + os.sep), six_in_probe
    for name in ("fastapi", "pydantic", "starlette"):
        leaked = fastapi_server.get_json("/probe/import", params={"name": name})
        assert leaked["ok"] is False, f"{name} from FastAPI's venv is importable in the probe: {leaked}"

    six_in_fastapi = fastapi_server.get_json("/fa/import", params={"name": "six"})
    assert six_in_fastapi["ok"] is False, f"six from the probe's venv leaked into FastAPI: {six_in_fastapi}"

    probe_path = [os.path.realpath(p) for p in fastapi_server.get_json("/probe/info")["sys_path"]]
    fastapi_path = [os.path.realpath(p) for p in fastapi_server.get_json("/fa/info")["sys_path"]]
    assert probe_path[0] == os.path.realpath(app_dir("probe")), probe_path
    assert fastapi_path[0] == os.path.realpath(app_dir("fastapi_app")), fastapi_path
    assert six_site in probe_path and fastapi_site not in probe_path, probe_path
    assert fastapi_site in fastapi_path and six_site not in fastapi_path, fastapi_path
    assert not [p for p in probe_path if p.startswith(os.path.realpath(app_dir("fastapi_app")))]

    # module globals are per interpreter too
    value = "probe-" + uuid.uuid4().hex
    assert fastapi_server.post("/probe/global", content=value.encode()).status_code == 200
    assert fastapi_server.get_json("/probe/global")["value"] == value


# ----------------------------------------- Flask + Django + FastAPI in one process


def test_flask_django_fastapi_in_one_process_under_concurrent_load(caddy_launcher, venvs):
    body = "\n".join(
        [
            python_block(
                "/flask/*", "flask_app:app", working_dir=app_dir("flask_app"), venv=venvs["flask"]
            ),
            python_block(
                "/django/*", "django_app:application",
                working_dir=app_dir("django_app"), venv=venvs["django"],
            ),
            fastapi_block("/fastapi/*", venvs["fastapi"], "main"),
        ]
    )
    caddy = caddy_launcher.start(body)
    try:
        ids = {name: caddy.get_json(f"/{name}/info")["interp_id"] for name in ("flask", "django", "fastapi")}
        assert ids["fastapi"] == 0, ids
        assert ids["flask"] != 0 and ids["django"] != 0 and ids["flask"] != ids["django"], ids

        clients, per_client = 3, 200
        failures: list[str] = []
        counts = {"flask": 0, "django": 0, "fastapi": 0}
        lock = threading.Lock()

        def check(app: str, response: httpx.Response, n: int) -> str | None:
            if response.status_code != 200:
                return f"{app} n={n}: {response.status_code} {response.text[:300]}"
            got = response.json()
            if app == "flask":
                want = {"app": "flask", "n": n, "square": n * n, "interp_id": ids["flask"]}
            elif app == "django":
                want = {"app": "django", "n": n, "cube": n**3, "interp_id": ids["django"]}
            else:
                want = {"name": f"ITEM-{n}", "total": round(n * 0.5 * 3, 2), "tags": ["a", "z"], "interp_id": 0}
            return None if got == want else f"{app} n={n}: got {got}, want {want}"

        def client(index: int) -> None:
            with httpx.Client(base_url=caddy.base_url, timeout=60) as http:
                for j in range(per_client):
                    n = index * 1000 + j
                    app = ("flask", "django", "fastapi")[(index + j) % 3]
                    try:
                        if app == "flask":
                            r = http.get("/flask/square", params={"n": n})
                        elif app == "django":
                            r = http.get("/django/cube", params={"n": n})
                        else:
                            r = http.post(
                                "/fastapi/items",
                                json={"name": f"item-{n}", "price": n * 0.5, "quantity": 3, "tags": ["z", "a"]},
                            )
                        problem = check(app, r, n)
                    except Exception as exc:  # noqa: BLE001 - every failure is reported
                        problem = f"{app} n={n}: {exc!r}"
                    with lock:
                        counts[app] += 1
                        if problem:
                            failures.append(problem)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        assert not any(t.is_alive() for t in threads), "load clients did not finish"
        assert not failures, f"{len(failures)} wrong answers, first: {failures[:5]}\n{tail(caddy.log_text())}"
        assert sum(counts.values()) == clients * per_client and min(counts.values()) == per_client, counts
        # still the same interpreters afterwards
        after = {name: caddy.get_json(f"/{name}/info")["interp_id"] for name in ("flask", "django", "fastapi")}
        assert after == ids
    finally:
        caddy.stop()


# ------------------------------------------------------------------------ refusals


def test_fastapi_in_its_own_gil_interpreter_is_refused_naming_pydantic_core(caddy_must_refuse, venvs):
    failure = caddy_must_refuse(fastapi_block(None, venvs["fastapi"], "interpreter"))
    assert failure.returncode != 0
    assert "pydantic_core" in failure.output, tail(failure.output)
    assert "isolation main" in failure.output, tail(failure.output)
    assert "isolation shared" in failure.output, tail(failure.output)


def test_fastapi_in_the_default_isolation_runs_in_a_process_of_its_own(start_caddy, venvs):
    """The default is `isolation auto`: pydantic_core refuses own-GIL interpreters, so
    the app gets a child process, and the log says why."""
    caddy = start_caddy(
        python_block(None, module_asgi=FASTAPI_MODULE, working_dir=app_dir("fastapi_app"), venv=venvs["fastapi"])
    )
    info = caddy.get_json("/info")
    assert info["pid"] != caddy.pid and info["interp_id"] == 0, info
    choice = [e for _, e in caddy.log_entries_containing("isolation auto: process") if e]
    assert choice and "pydantic_core" in choice[0]["why"], tail(caddy.log_text())


def test_two_apps_in_the_main_interpreter_are_refused(caddy_must_refuse):
    probe = app_dir("probe")
    body = "\n".join(
        [
            python_block("/one/*", "probe:app", isolation="main", working_dir=probe),
            python_block("/two/*", "probe:app", isolation="main", working_dir=app_dir("twin_a")),
        ]
    )
    failure = caddy_must_refuse(body)
    assert failure.returncode != 0
    assert "isolation main is taken by" in failure.output, tail(failure.output)


def test_a_second_fastapi_in_shared_gets_the_pyo3_message(caddy_must_refuse, venvs):
    body = "\n".join(
        [
            fastapi_block("/a/*", venvs["fastapi"], "shared"),
            fastapi_block("/b/*", venvs["fastapi"], "shared"),
        ]
    )
    failure = caddy_must_refuse(body)
    assert failure.returncode != 0
    assert "pydantic_core" in failure.output, tail(failure.output)
    assert "built with PyO3" in failure.output, tail(failure.output)
    assert "only one interpreter per process" in failure.output, tail(failure.output)


def test_fastapi_in_main_and_another_in_shared_gets_the_pyo3_message(caddy_must_refuse, venvs):
    body = "\n".join(
        [
            fastapi_block("/a/*", venvs["fastapi"], "main"),
            fastapi_block("/b/*", venvs["fastapi"], "shared"),
        ]
    )
    failure = caddy_must_refuse(body)
    assert "built with PyO3" in failure.output, tail(failure.output)
    assert "only one interpreter per process" in failure.output, tail(failure.output)


@pytest.mark.parametrize("isolation", ["shared", "main"])
@pytest.mark.parametrize("count", ["2", "auto"])
def test_more_than_one_interpreter_is_refused_outside_own_gil_isolation(
    caddy_must_refuse, isolation, count
):
    body = python_block(
        None, "probe:app", isolation=isolation, interpreters=count, working_dir=app_dir("probe")
    )
    failure = caddy_must_refuse(body)
    assert failure.returncode != 0
    assert "interpreters above 1" in failure.output, tail(failure.output)
    assert "main GIL" in failure.output and "threads" in failure.output, tail(failure.output)


# ------------------------------------------------------------- main app, Caddy's cwd


def test_a_main_app_in_caddys_current_directory_starts(caddy_launcher):
    """`working_dir` defaults to Caddy's current directory: an `isolation main` app
    there must start like any other."""
    caddy = caddy_launcher.new("caddy-cwd-app")
    caddy_launcher.running.append(caddy)
    shutil.copy(app_dir("probe") / "probe.py", caddy.workdir / "probe.py")
    try:
        caddy.start(python_block(None, "probe:app", isolation="main"))
        info = caddy.get_json("/info")
        assert info["interp_id"] == 0, info
        assert os.path.realpath(info["sys_path"][0]) == os.path.realpath(caddy.workdir), info
    finally:
        caddy.stop()


# ------------------------------------------------------------------ main app reloads


def _set_versions(app: "os.PathLike", version: str) -> None:
    for name, var in (("fastapi_app.py", "CODE_VERSION"), ("fastapi_helpers.py", "HELPER_VERSION")):
        path = app / name
        text, count = re.subn(rf'^{var} = ".*"$', f'{var} = "{version}"', path.read_text(), flags=re.M)
        assert count == 1, f"{var} not found in {path}"
        path.write_text(text)
    # bytecode caches are validated by mtime in whole seconds: drop them so a rewrite
    # within the same second is never mistaken for the cached one
    shutil.rmtree(app / "__pycache__", ignore_errors=True)


def test_main_app_reload_imports_new_app_code_and_keeps_pydantic_core(
    caddy_launcher, venvs, tmp_path
):
    app = tmp_path / "fastapi_app"
    shutil.copytree(app_dir("fastapi_app"), app, ignore=shutil.ignore_patterns("__pycache__"))
    body = fastapi_block(None, venvs["fastapi"], "main", working_dir=app)
    caddy = caddy_launcher.start(body)
    try:
        first = caddy.get_json("/info")
        assert first["interp_id"] == 0
        assert (first["code_version"], first["helper_version"]) == ("original", "original"), first
        token = caddy.get_json("/lifespan")["token"]

        for round_ in (1, 2, 3):
            version = f"reload-{round_}-{uuid.uuid4().hex[:8]}"
            _set_versions(app, version)
            caddy.reload(body, force=True)

            info = caddy.get_json("/info")
            assert info["interp_id"] == 0, info
            assert info["code_version"] == version, f"round {round_}: old app code served: {info}"
            assert info["helper_version"] == version, f"round {round_}: old helper module: {info}"
            assert info["pydantic_core_stamp"] == first["pydantic_core_stamp"], (
                f"round {round_}: pydantic_core was imported again", info, first
            )
            item = caddy.post("/items", json={"name": "x", "price": 2, "quantity": 3})
            assert item.status_code == 200 and item.json()["total"] == 6.0, item.text
            bad = caddy.post("/items", json={"name": "x"})
            assert bad.status_code == 422, bad.text
            state = caddy.get_json("/lifespan")
            assert state["token"] and state["token"] != token, f"lifespan startup did not run again: {state}"
            token = state["token"]
            url = caddy.base_url.replace("http://", "ws://") + "/ws"
            with ws_connect(url, open_timeout=10, close_timeout=5) as ws:
                ws.send(version)
                assert ws.recv(timeout=10) == f"echo:{version}"
        assert caddy.alive()
    finally:
        caddy.stop()


def test_failed_reloads_of_a_main_app_leave_the_running_one_serving(caddy_launcher, venvs, tmp_path):
    """A reload that would put a second app in the main interpreter, or whose new app
    code fails to import, is refused; the app already running keeps serving."""
    app = tmp_path / "fastapi_app"
    shutil.copytree(app_dir("fastapi_app"), app, ignore=shutil.ignore_patterns("__pycache__"))
    body = fastapi_block(None, venvs["fastapi"], "main", working_dir=app)
    caddy = caddy_launcher.start(body)
    try:
        before = caddy.get_json("/info")

        two_mains = "\n".join(
            [
                fastapi_block("/fa/*", venvs["fastapi"], "main", working_dir=app),
                python_block("/probe/*", "probe:app", isolation="main", working_dir=app_dir("probe")),
            ]
        )
        refused = caddy.reload(two_mains, force=True, check=False)
        assert refused.returncode != 0, refused.stdout + refused.stderr
        assert "isolation main is taken by" in refused.stdout + refused.stderr + caddy.log_text()

        broken = app / "fastapi_app.py"
        broken.write_text(broken.read_text() + "\nraise RuntimeError('vivarium-test: broken reload')\n")
        shutil.rmtree(app / "__pycache__", ignore_errors=True)
        refused = caddy.reload(body, force=True, check=False)
        assert refused.returncode != 0, refused.stdout + refused.stderr
        assert "vivarium-test: broken reload" in refused.stdout + refused.stderr + caddy.log_text()

        after = caddy.get_json("/info")
        assert after["interp_id"] == 0 and after["code_version"] == before["code_version"], after
        item = caddy.post("/items", json={"name": "x", "price": 1, "quantity": 2})
        assert item.status_code == 200 and item.json()["total"] == 2.0, item.text
        assert caddy.get_json("/whoami", headers={"X-Token": "t-bob"}) == {"user": "bob"}
        assert caddy.alive()
    finally:
        caddy.stop()


def test_reloading_a_config_with_a_shared_fastapi_app_keeps_it_serving(caddy_launcher, venvs):
    """Whatever a reload does with a `shared` app whose PyO3 extension is loaded
    already, the app keeps answering (old or new instance), and so does the rest."""
    fastapi = fastapi_block("/fa/*", venvs["fastapi"], "shared")
    caddy = caddy_launcher.start(fastapi)
    try:
        assert caddy.get_json("/fa/info")["interp_id"] != 0
        caddy.reload(fastapi + "\nrespond /hello 200 {\n\tbody added-by-reload\n}\n", force=True, check=False)
        item = caddy.post("/fa/items", json={"name": "x", "price": 1, "quantity": 2})
        assert item.status_code == 200 and item.json()["total"] == 2.0, item.text
        assert caddy.get_json("/fa/lifespan")["token"]
        assert caddy.alive()
    finally:
        caddy.stop()


@pytest.mark.parametrize("isolation", ["interpreter", "shared", "main"])
def test_os_fork_is_refused_in_every_isolation(caddy_launcher, isolation):
    """A fork without exec would copy one thread of a multithreaded Go process."""
    caddy = caddy_launcher.start(
        python_block("/p/*", "probe:app", isolation=isolation, working_dir=app_dir("probe"))
    )
    try:
        answer = caddy.get_json("/p/fork")
    finally:
        caddy.stop()
    assert answer["forked"] is False, answer
    assert "fork" in answer["error"], answer
