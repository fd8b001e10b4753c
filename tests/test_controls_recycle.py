"""Recycling: `max_requests N` (plus up to 10% jitter) and `max_memory SIZE` replace an
interpreter with a fresh one, started before the old one stops taking requests, so
that no request is refused or dropped; each recycle is logged with its cause. Another
app in the same process keeps its interpreter."""

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from controls_support import KINDS, block, info, log_entries
from support import tail, wait_until

BOUND = 60


def config(kind, **options):
    return "\n".join([block("/a/*", kind, **options), block("/other/*", "wsgi")])


@pytest.mark.parametrize("kind", KINDS)
def test_max_requests_replaces_the_interpreter_without_failing_a_request(start_caddy, kind):
    server = start_caddy(config(kind, max_requests=10))
    other = info(server, "/other")["interpreter"]

    def recycles():
        return log_entries(server, "interpreter recycled")

    def hammer(_):
        # Until three recycles are over; the old interpreter serves on while
        # its replacement starts, so requests come at a pace.
        with httpx.Client(base_url=server.base_url, timeout=BOUND) as client:
            got = []
            while len(recycles()) < 3 and len(got) < 300:
                got.append(client.get("/a/info"))
                time.sleep(0.01)
            return got

    with ThreadPoolExecutor(4) as pool:
        responses = [r for batch in pool.map(hammer, range(4)) for r in batch]

    failed = [(r.status_code, r.text) for r in responses if r.status_code != 200]
    assert not failed, f"{len(failed)} of {len(responses)} failed: {failed[:5]}\n{tail(server.log_text())}"
    interpreters = {r.json()["interpreter"] for r in responses}
    assert len(interpreters) >= 3, f"{len(responses)} requests with max_requests 10 went to {interpreters}"
    started = log_entries(server, "recycling an interpreter: max_requests 10 reached")
    assert len(started) >= 3, tail(server.log_text())
    # max_requests plus its jitter, up to 10%
    assert all(10 <= e["served"] <= 11 for e in started), [e["served"] for e in started]
    assert info(server, "/other")["interpreter"] == other


@pytest.mark.parametrize("kind", KINDS)
def test_max_memory_replaces_an_interpreter_whose_heap_grew(start_caddy, kind):
    server = start_caddy(config(kind, max_memory="40MiB"))
    other = info(server, "/other")["interpreter"]
    first = info(server, "/a")["interpreter"]

    def grown():
        response = server.get("/a/grow", params={"n": 100_000})
        assert response.status_code == 200, response.text
        return log_entries(server, "max_memory 40.0 MiB exceeded")

    assert wait_until(grown, timeout=BOUND, interval=1.1), tail(server.log_text())
    entry = log_entries(server, "max_memory 40.0 MiB exceeded")[0]
    assert entry["interpreter"] == first and "its heap is" in entry["msg"], entry
    assert wait_until(lambda: info(server, "/a")["interpreter"] != first, timeout=BOUND)
    assert info(server, "/a")["kept"] < 100_000 * 3, "the fresh interpreter kept the old one's objects"
    assert info(server, "/other")["interpreter"] == other


def test_max_memory_below_a_fresh_interpreters_heap_turns_itself_off(start_caddy):
    server = start_caddy(config("wsgi", max_memory="1MiB"))
    for _ in range(5):
        assert server.get("/a/info").status_code == 200
    assert wait_until(lambda: log_entries(server, "below the heap of a freshly started interpreter"), timeout=BOUND), (
        tail(server.log_text()))
    settled = info(server, "/a")["interpreter"]
    for _ in range(10):
        assert server.get("/a/info").status_code == 200
    assert info(server, "/a")["interpreter"] == settled, "it went on recycling"
