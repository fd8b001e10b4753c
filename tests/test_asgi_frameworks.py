"""ASGI frameworks (Starlette, Django) next to a WSGI app in one process, each in
own-GIL interpreters, and the event loop threads named for top and perf."""

import asyncio
import os

import pytest
from websockets.asyncio.client import connect as ws_connect

from support import app_dir, python_block, thread_names, venv_site_packages
from asgi_support import STARLETTE, DJANGO, log_excerpt, start_raw_server


@pytest.fixture(scope="module")
def server(caddy_launcher):
    caddy = start_raw_server(caddy_launcher)
    yield caddy
    caddy.stop()


@pytest.fixture(scope="module")
def framework_venvs(make_venv):
    return {
        "starlette": make_venv("asgi-starlette", [f"starlette=={STARLETTE}"]),
        "django": make_venv("asgi-django", [f"Django=={DJANGO}"]),
    }


def test_each_interpreter_runs_its_event_loop_on_a_thread_named_for_top_and_perf(server):
    names = thread_names(server.pid)
    assert names.count("vv-asgi") == 1, names


def test_starlette_and_django_run_next_to_a_wsgi_app_in_own_gil_interpreters(
    start_caddy, framework_venvs, python_version
):
    server = start_caddy(
        "\n".join(
            [
                python_block(
                    "/star/*", module_asgi="starlette_app:app", lifespan="on",
                    working_dir=app_dir("asgi_starlette"), venv=framework_venvs["starlette"],
                ),
                python_block(
                    "/dj/*", module_asgi="djsite.asgi:application",
                    working_dir=app_dir("asgi_django"), venv=framework_venvs["django"],
                ),
                python_block("/wsgi/*", "probe:app", working_dir=app_dir("probe")),
            ]
        )
    )

    star = server.get_json("/star/info")
    assert star["framework"] == "starlette"
    assert star["version"] == STARLETTE
    star_site = os.path.realpath(venv_site_packages(framework_venvs["starlette"], python_version))
    assert os.path.realpath(star["file"]).startswith(star_site + os.sep), star
    assert star["root_path"] == "/star"
    assert star["url_for"] == f"{server.base_url}/star/info", star
    assert star["greeting"] == "hello from starlette lifespan", star
    assert star["gil"] == "own", star
    item = server.get("/star/items/42", params={"q": "z"})
    assert item.status_code == 200, item.text
    assert item.json() == {"n": 42, "q": "z"}
    assert server.get("/star/nowhere").status_code == 404

    async def starlette_websocket():
        async with ws_connect(f"ws://127.0.0.1:{server.http_port}/star/ws", open_timeout=20) as ws:
            await ws.send("hi")
            return await asyncio.wait_for(ws.recv(), 20)

    assert asyncio.run(starlette_websocket()) == "starlette:hi:hello from starlette lifespan"

    dj_async = server.get_json("/dj/async/")
    response = server.post("/dj/sync/", content=b"hi django")
    assert response.status_code == 200, f"{response.status_code} {response.text[:2000]}\n{log_excerpt(server)}"
    dj_sync = response.json()
    for view, info in (("async", dj_async), ("sync", dj_sync)):
        assert info["framework"] == "django"
        assert info["view"] == view
        assert info["version"] == DJANGO
        assert info["gil"] == "own", info
        assert info["script_name"] == "/dj", info
        assert info["path"] == f"/dj/{view}/", info
        assert info["path_info"] == f"/{view}/", info
        assert info["reverse"] == f"/dj/{view}/", info
    assert dj_sync["method"] == "POST"
    assert dj_sync["body"] == "hi django"
    assert dj_sync["pid"] == dj_async["pid"]
    assert dj_sync["interp_id"] == dj_async["interp_id"]
    dj_site = os.path.realpath(venv_site_packages(framework_venvs["django"], python_version))
    assert os.path.realpath(dj_async["file"]).startswith(dj_site + os.sep), dj_async
    assert server.get("/dj/nowhere/").status_code == 404

    wsgi = server.get_json("/wsgi/info")

    pids = {star["pid"], dj_async["pid"], wsgi["pid"]}
    assert pids == {server.pid}, pids
    ids = [star["interp_id"], dj_async["interp_id"], wsgi["interp_id"]]
    assert len(set(ids)) == 3, f"apps share an interpreter: starlette, django, wsgi = {ids}"
    assert 0 not in ids, f"an app runs in the main interpreter: {ids}"
