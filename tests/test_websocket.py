"""ASGI WebSockets: the handshake (accept, subprotocol, extra headers, refusal with 403),
text and binary messages both ways, close codes both ways, and many open sockets
without a thread each."""

import asyncio
import json
import uuid

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from support import app_dir, python_block, wait_until

OPEN_TIMEOUT = 30
RECV_TIMEOUT = 30
MANY = 500


@pytest.fixture(scope="module")
def server(caddy_launcher):
    caddy = caddy_launcher.start(
        python_block("/ws/*", module_asgi="ws_app:app", working_dir=app_dir("asgi_ws"))
    )
    yield caddy
    caddy.stop()


def url(server, path):
    return f"ws://127.0.0.1:{server.http_port}{path}"


def run(coroutine):
    return asyncio.run(coroutine)


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)


def disconnect_code(server, token):
    """The close code of the websocket.disconnect the app saw for token's socket."""

    def report():
        return server.get_json("/ws/report", params={"token": token})

    seen = wait_until(lambda: report().get("disconnect_code") is not None)
    last = report()
    assert seen, f"the app saw no websocket.disconnect: {last}"
    return last["disconnect_code"]


def header_values(scope, name):
    return [v["bytes"] for n, v in scope["headers"] if n["bytes"] == name]


def test_the_websocket_scope_describes_the_handshake(server):
    async def scenario():
        async with connect(url(server, "/ws/scope?x=1&y=%20z"), open_timeout=OPEN_TIMEOUT) as ws:
            return json.loads(await recv(ws)), ws.local_address[1]

    scope, client_port = run(scenario())
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["root_path"] == "/ws"
    assert scope["path"] == "/ws/scope"
    assert scope["raw_path"] == {"bytes": "/ws/scope"}
    assert scope["query_string"] == {"bytes": "x=1&y=%20z"}
    assert scope["types"]["raw_path"] == "bytes"
    assert scope["types"]["query_string"] == "bytes"
    assert scope["subprotocols"] == []
    assert header_values(scope, "host") == [f"127.0.0.1:{server.http_port}"]
    assert header_values(scope, "sec-websocket-version") == ["13"]
    assert list(scope["client"]) == ["127.0.0.1", client_port]
    assert list(scope["server"]) == ["127.0.0.1", server.http_port]


def test_text_and_binary_messages_are_echoed_with_their_type(server):
    text = "héllo wörld ✓"
    binary = bytes(range(256)) * 4
    big = bytes(range(251)) * 4177  # about 1 MiB

    async def scenario():
        async with connect(
            url(server, "/ws/echo"), open_timeout=OPEN_TIMEOUT, max_size=None
        ) as ws:
            await ws.send(text)
            got_text = await recv(ws)
            await ws.send(binary)
            got_binary = await recv(ws)
            await ws.send(big)
            got_big = await recv(ws)
            for i in range(100):
                await ws.send(f"n{i}")
            in_order = [await recv(ws) for _ in range(100)]
            return got_text, got_binary, got_big, in_order

    got_text, got_binary, got_big, in_order = run(scenario())
    assert isinstance(got_text, str) and got_text == text
    assert isinstance(got_binary, bytes) and got_binary == binary
    assert isinstance(got_big, bytes) and got_big == big
    assert in_order == [f"n{i}" for i in range(100)]


def test_the_app_picks_a_subprotocol_and_adds_headers_to_the_handshake(server):
    async def scenario():
        async with connect(
            url(server, "/ws/subprotocol"), subprotocols=["a", "b"], open_timeout=OPEN_TIMEOUT
        ) as ws:
            first = json.loads(await recv(ws))
            return ws.subprotocol, ws.response.headers.get("x-vivarium-ws"), first

    chosen, extra_header, first = run(scenario())
    assert first == {"offered": ["a", "b"]}
    assert chosen == "b"
    assert extra_header == "accepted"


def test_the_apps_close_code_and_reason_reach_the_client(server):
    async def scenario():
        async with connect(url(server, "/ws/server_close"), open_timeout=OPEN_TIMEOUT) as ws:
            await ws.send("please close")
            with pytest.raises(ConnectionClosed):
                await recv(ws)
            return ws.close_code, ws.close_reason

    code, reason = run(scenario())
    assert code == 4001
    assert reason == "bye now"


def test_the_clients_close_code_reaches_the_app(server):
    token = uuid.uuid4().hex

    async def scenario():
        async with connect(
            url(server, f"/ws/client_close?token={token}"), open_timeout=OPEN_TIMEOUT
        ) as ws:
            await ws.send("ping")
            assert await recv(ws) == "ping"
            await ws.close(code=4002, reason="client done")

    run(scenario())
    assert disconnect_code(server, token) == 4002


def test_a_client_dropping_the_connection_is_seen_by_the_app_as_1006(server):
    """No close frame at all: the app still gets websocket.disconnect, with 1006
    (closed abnormally, RFC 6455 section 7.1.5)."""
    token = uuid.uuid4().hex

    async def scenario():
        ws = await connect(url(server, f"/ws/client_close?token={token}"), open_timeout=OPEN_TIMEOUT)
        await ws.send("ping")
        assert await recv(ws) == "ping"
        ws.transport.abort()  # TCP goes away without a close frame

    run(scenario())
    assert disconnect_code(server, token) == 1006


def test_closing_before_accept_refuses_the_handshake_with_403(server):
    async def scenario():
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url(server, "/ws/deny"), open_timeout=OPEN_TIMEOUT):
                pass
        return refused.value.response.status_code

    assert run(scenario()) == 403
    # the app serves on
    assert server.get_json("/ws/info")["pid"] == server.pid


def test_500_open_websockets_need_no_thread_each(server, measurement):
    # one socket first, so the threads a WebSocket needs at all already exist
    async def one():
        async with connect(url(server, "/ws/echo"), open_timeout=OPEN_TIMEOUT) as ws:
            await ws.send("warm-up")
            assert await recv(ws) == "warm-up"

    run(one())
    assert wait_until(lambda: server.get_json("/ws/info")["open"] == 0)
    threads_before = server.threads()

    async def scenario():
        sockets = []
        try:
            for start in range(0, MANY, 100):  # open in batches of 100
                sockets += await asyncio.gather(
                    *(
                        connect(url(server, "/ws/echo"), open_timeout=OPEN_TIMEOUT)
                        for _ in range(start, min(start + 100, MANY))
                    )
                )
            await asyncio.gather(*(ws.send(f"hello {i}") for i, ws in enumerate(sockets)))
            replies = await asyncio.gather(*(recv(ws) for ws in sockets))
            info = await asyncio.to_thread(server.get_json, "/ws/info")
            threads_open = server.threads()
            return replies, info, threads_open
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)

    replies, info, threads_open = run(scenario())
    measurement(
        f"{MANY} open WebSockets: server threads {threads_before} before, {threads_open} with all open"
    )
    assert replies == [f"hello {i}" for i in range(MANY)]
    assert info["open"] == MANY, info
    assert threads_open - threads_before < 50, (
        f"threads went from {threads_before} to {threads_open} with {MANY} sockets open"
    )
    assert wait_until(lambda: server.get_json("/ws/info")["open"] == 0), server.get_json("/ws/info")
    assert server.alive()


def test_open_websockets_count_against_max_queue(start_caddy):
    other = start_caddy(
        python_block("/ws/*", module_asgi="ws_app:app", working_dir=app_dir("asgi_ws"), max_queue=2)
    )

    async def scenario():
        async with connect(url(other, "/ws/echo"), open_timeout=OPEN_TIMEOUT) as first:
            async with connect(url(other, "/ws/echo"), open_timeout=OPEN_TIMEOUT) as second:
                for ws in (first, second):
                    await ws.send("x")
                    assert await recv(ws) == "x"
                # two sockets in flight fill max_queue 2: a request and a third socket are refused
                response = await asyncio.to_thread(other.get, "/ws/info")
                with pytest.raises(InvalidStatus) as refused:
                    async with connect(url(other, "/ws/echo"), open_timeout=OPEN_TIMEOUT):
                        pass
            # one socket closed: room again
            ok = await asyncio.to_thread(
                wait_until, lambda: other.get("/ws/info").status_code == 200
            )
            return response, refused.value.response, ok

    response, refused, ok = run(scenario())
    assert response.status_code == 503, (response.status_code, response.text)
    assert response.headers.get("retry-after"), dict(response.headers)
    assert refused.status_code == 503
    assert refused.headers.get("retry-after"), dict(refused.headers)
    assert ok, "the app refused requests after a socket closed"


@pytest.mark.parametrize("setting, negotiated", [(None, True), ("on", True), ("off", False)])
def test_permessage_deflate_is_negotiated_unless_turned_off(start_caddy, setting, negotiated):
    """The client's offer is accepted (the server compressing each message on its own)
    and the app gets and sends plain messages either way."""
    caddy = start_caddy(
        python_block("/ws/*", module_asgi="ws_app:app", working_dir=app_dir("asgi_ws"),
                     websocket_compression=setting)
    )
    message = "compressible " * 10000

    async def scenario():
        async with connect(url(caddy, "/ws/echo"), open_timeout=OPEN_TIMEOUT) as ws:
            await ws.send(message)
            return ws.response.headers.get("Sec-WebSocket-Extensions"), await recv(ws)

    extensions, echoed = run(scenario())
    assert echoed == message
    if negotiated:
        assert extensions is not None and extensions.startswith("permessage-deflate")
        assert "server_no_context_takeover" in extensions
    else:
        assert extensions is None


def test_websocket_compression_is_refused_for_a_wsgi_app(caddy_must_refuse):
    failure = caddy_must_refuse(
        python_block("/w/*", module_wsgi="probe:app", working_dir=app_dir("probe"),
                     websocket_compression="off")
    )
    assert "websocket_compression applies to ASGI apps" in failure.output
