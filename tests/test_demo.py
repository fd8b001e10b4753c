"""The demo of `make run` and of the Docker image, served natively by the same script
(scripts/demo.sh): Flask, Django and Starlette in their own interpreters and FastAPI in
the main interpreter, all in one Caddy process."""

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import websockets

from support import caddy_env, free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo(vivarium_bin, tmp_path_factory):
    """`scripts/demo.sh setup`, then `scripts/demo.sh start` (migrate, then Caddy): the
    Docker image's steps, on a database of its own."""
    work = tmp_path_factory.mktemp("demo")
    port, admin = free_port(), free_port()
    env = caddy_env(work) | {
        "PYTHON": os.environ["PYTHON"],
        "VIVARIUM_BIN": str(vivarium_bin),
        "VIVARIUM_PORT": str(port),
        "VIVARIUM_ADMIN_PORT": str(admin),
        "DJANGO_SQLITE_PATH": str(work / "db" / "demo.sqlite3"),
    }
    setup = subprocess.run([ROOT / "scripts" / "demo.sh", "setup"], env=env,
                           capture_output=True, text=True, timeout=900)
    assert setup.returncode == 0, setup.stderr[-4000:]

    log = open(work / "demo.log", "w")
    proc = subprocess.Popen([ROOT / "scripts" / "demo.sh", "start"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(base + "/", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, (work / "demo.log").read_text()[-4000:]
        assert time.monotonic() < deadline, (work / "demo.log").read_text()[-4000:]
        time.sleep(0.3)
    with httpx.Client(base_url=base, timeout=30) as client:
        yield client, port, proc
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, (work / "demo.log").read_text()[-4000:]
    log.close()


def test_every_demo_app_answers_under_its_prefix(demo):
    client, _, _ = demo
    assert "/flask/" in client.get("/").text
    assert client.get("/flask/api/hello").json()["message"] == "Hello, world!"
    django = client.get("/django/")
    assert django.status_code == 200 and "/django/admin/" in django.text
    assert client.get("/django/admin/").status_code == 302
    assert client.get("/django/static/admin/css/base.css").status_code == 200
    info = client.get("/starlette/info").json()
    assert info["root_path"] == "/starlette"


def test_fastapi_validates_and_computes(demo):
    client, _, _ = demo
    ok = client.post("/fastapi/items", json={"name": "pear", "price": 2.5, "quantity": 2})
    assert ok.status_code == 200, ok.text
    bad = client.post("/fastapi/items", json={"name": "pear"})
    assert bad.status_code == 422, bad.text


def test_apps_share_the_process_and_fastapi_alone_runs_in_main(demo):
    client, _, proc = demo
    ids = {
        "flask": client.get("/flask/interpreter").json()["interpreter_id"],
        "starlette": client.get("/starlette/info").json()["interpreter_id"],
        "fastapi": client.get("/fastapi/info").json()["interpreter_id"],
    }
    assert ids["fastapi"] == 0, ids
    assert 0 not in (ids["flask"], ids["starlette"]) and ids["flask"] != ids["starlette"], ids


def test_the_starlette_websocket_echoes(demo):
    _, port, _ = demo

    async def echo():
        async with websockets.connect(f"ws://127.0.0.1:{port}/starlette/ws") as ws:
            await ws.send("hello demo")
            return await ws.recv()

    assert "hello demo" in asyncio.run(echo())
