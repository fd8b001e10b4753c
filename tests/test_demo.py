"""The demo of `make run` and of the Docker image, served natively by the same script
(scripts/demo.sh): Flask, Django and Starlette in their own interpreters of the Caddy
process, FastAPI in two child processes of it (`isolation process`)."""

import asyncio
import os

import websockets


# The `demo` fixture (conftest.py) serves it, once for this module and test_browser.py.


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


def test_three_apps_share_caddys_process_and_fastapi_runs_in_two_children(demo):
    client, _, proc = demo
    flask = client.get("/flask/interpreter").json()
    starlette = client.get("/starlette/info").json()
    fastapi = client.get("/fastapi/info").json()
    caddy = flask["pid"]
    assert starlette["pid"] == caddy, (flask, starlette)
    assert 0 not in (flask["interpreter_id"], starlette["interpreter_id"]), (flask, starlette)
    assert flask["interpreter_id"] != starlette["interpreter_id"], (flask, starlette)
    assert fastapi["pid"] != caddy and fastapi["parent_pid"] == caddy, fastapi
    assert fastapi["interpreter_id"] == 0, fastapi
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == caddy:
                        children.append(int(entry))
            except OSError:
                continue
    assert fastapi["pid"] in children and len(children) == 2, children


def test_the_starlette_websocket_echoes(demo):
    _, port, _ = demo

    async def echo():
        async with websockets.connect(f"ws://127.0.0.1:{port}/starlette/ws") as ws:
            await ws.send("hello demo")
            return await ws.recv()

    assert "hello demo" in asyncio.run(echo())
