"""The controls in `isolation process`: the app's `env` reaches its os.environ in its
process (not Caddy's, nor C getenv(), as in Caddy's process), a request past its
`timeout` gets 504 while its process interrupts it and logs where it was (four of
them on four threads, and deep recursion, whose memory the timeout bounds, too), a
process whose code does not come back is killed and another started, reloads and
SIGTERM are bounded whatever the app does, and an import past `start_timeout` is
refused with where it was, at start and on reload. An app in the Caddy process
serves throughout. docs/faults.md maps each fault to these tests."""

import os
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from controls_support import block, env_of, info, log_entries
from support import proc_status, tail, wait_until

BOUND = 60


def config(kind="wsgi", **options):
    options.setdefault("timeout", "2s")
    options.setdefault("threads", 2)
    return "\n".join([
        block("/p/*", kind, "env VV_PROCESS in-the-process", isolation="process", **options),
        block("/other/*", "wsgi"),
    ])


def get(server, path, **params):
    with httpx.Client(base_url=server.base_url, timeout=BOUND) as client:
        return client.get(path, params=params)


def test_env_reaches_the_apps_os_environ_in_its_process(start_caddy):
    server = start_caddy(config())
    assert env_of(server, "/p", "VV_PROCESS")["VV_PROCESS"] == ["in-the-process", "in-the-process", None]
    assert env_of(server, "/other", "VV_PROCESS")["VV_PROCESS"] == [None, None, None]


def test_a_spinning_request_gets_504_and_its_process_interrupts_it(start_caddy):
    server = start_caddy(config())
    pid = info(server, "/p")["pid"]

    assert get(server, "/p/spin").status_code == 504

    entry = wait_until(lambda: [e for e in log_entries(server, "request GET /p/spin") if "traceback" in e])
    assert entry, tail(server.log_text())
    assert "in spin_forever" in entry[0]["traceback"] and entry[0]["pid"] == pid, entry[0]
    assert "ran past its timeout 2s" in entry[0]["msg"], entry[0]
    assert info(server, "/p")["pid"] == pid, "the interrupted process should serve on"
    assert get(server, "/other/info").status_code == 200


def test_a_process_whose_code_does_not_come_back_is_killed_and_replaced(start_caddy):
    server = start_caddy(config(interpreters=1))
    pid = info(server, "/p")["pid"]

    assert get(server, "/p/hold", s=3600).status_code == 504

    assert server.wait_for_log("the process is killed, and another started", timeout=BOUND), tail(server.log_text())
    assert wait_until(lambda: get(server, "/p/info").status_code == 200 and info(server, "/p")["pid"] != pid,
                      timeout=BOUND), tail(server.log_text())
    assert get(server, "/other/info").status_code == 200


@pytest.mark.parametrize("kind,path", [("wsgi", "/spin"), ("wsgi", "/stubborn"), ("wsgi", "/hold?s=3600"),
                                       ("asgi", "/stubborn"), ("asgi", "/hold?s=3600")])
def test_sigterm_ends_the_process_app_whatever_it_runs(caddy_launcher, kind, path):
    server = caddy_launcher.start(config(kind))
    kids = children_of(server.pid)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: httpx.get(server.base_url + "/p" + path, timeout=BOUND))
        assert server.wait_for_log(f"controls: {path.split('?')[0]} begins"), tail(server.log_text())
        started = time.monotonic()
        code = server.stop(timeout=60)
        took = time.monotonic() - started
    print(f"SIGTERM of a process app running {kind} {path}: {took:.1f} s")
    assert code == 0, f"exit code {code}:\n{tail(server.log_text())}"
    # the grace (the app's timeout, 2 s), 10 s for interrupted code, 5 s to exit
    assert took < 40, f"SIGTERM took {took:.1f} s:\n{tail(server.log_text())}"
    assert kids and wait_until(lambda: not any(alive(k) for k in kids), timeout=10), "a process outlived Caddy"


# What the log says of a process that does not finish a request at its stop:
# killed for its timeout, ended by its own stop, or killed by Caddy after it.
STUCK_AT_STOP = ("its process does not come back from it", "did not stop: its code was interrupted",
                 "the app's process did not exit in time after its stop; killed it")


def alive(pid):
    try:
        return proc_status(pid, "State")[0] != "Z"
    except OSError:
        return False


def children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and int(proc_status(int(entry), "PPid")) == pid and proc_status(int(entry), "State")[0] != "Z":
                found.append(int(entry))
        except (OSError, KeyError):
            continue
    return found


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_a_reload_ends_within_the_grace_even_when_the_process_swallows_the_interrupt(start_caddy, kind):
    server = start_caddy(config(kind, timeout="3s", interpreters=1))
    pid = info(server, "/p")["pid"]
    with ThreadPoolExecutor(1) as pool:
        stuck = pool.submit(get, server, "/p/stubborn")
        assert server.wait_for_log("controls: /stubborn begins"), tail(server.log_text())
        started = time.monotonic()
        server.reload(config(kind, timeout="3s", interpreters=1), force=True)
        took = time.monotonic() - started
        assert stuck.result(timeout=BOUND).status_code == 504
    print(f"reload of a process app running {kind} /stubborn: {took:.1f} s")
    # the grace (3 s), 10 s for interrupted code, 5 s for the process to exit
    assert took < 30, f"the reload took {took:.1f} s:\n{tail(server.log_text())}"
    assert info(server, "/p")["pid"] != pid
    assert wait_until(lambda: pid not in children_of(server.pid), timeout=BOUND), "the old process outlived the reload"
    said = [needle for needle in STUCK_AT_STOP if log_entries(server, needle)]
    print(f"reload of a process app running {kind} /stubborn: the log says {said}")
    assert said, tail(server.log_text())
    assert get(server, "/other/info").status_code == 200


def test_four_spinning_requests_on_four_threads_leave_the_process_app_reachable(start_caddy):
    server = start_caddy(config(threads=4, interpreters=1))
    pid = info(server, "/p")["pid"]
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda _: get(server, "/p/spin").status_code, range(4)))
    assert codes == [504] * 4

    # Requests that only compute run one at a time (the scheduler's limit), so
    # some of the four may still wait when their client gets 504: those never
    # start. Each one that began is interrupted, with where it was logged.
    def every_begun_is_interrupted():
        began = len(log_entries(server, "controls: /spin begins"))
        interrupted = len([e for e in log_entries(server, "request GET /p/spin") if "traceback" in e])
        return began >= 1 and interrupted == began

    assert wait_until(every_begun_is_interrupted, timeout=BOUND), tail(server.log_text())
    assert info(server, "/p")["pid"] == pid, "the interrupted requests should have freed the threads"
    assert every_begun_is_interrupted(), tail(server.log_text())
    assert get(server, "/other/info").status_code == 200


def test_deep_recursion_is_interrupted_before_its_memory_grows_without_bound(start_caddy):
    server = start_caddy(config(interpreters=1))
    pid = info(server, "/p")["pid"]

    assert get(server, "/p/recurse").status_code == 504

    entry = wait_until(lambda: [e for e in log_entries(server, "request GET /p/recurse") if "traceback" in e])
    assert entry, tail(server.log_text())
    assert "in recurse" in entry[0]["traceback"] and "frames in all" in entry[0]["traceback"], entry[0]
    assert wait_until(lambda: get(server, "/p/info").status_code == 200, timeout=BOUND)
    assert info(server, "/p")["pid"] == pid, "the process should serve on"
    # Unbounded, this recursion took 2.9 GB in 20 s: it grows only until its
    # timeout, and what it took is given back once it is interrupted.
    peak_kib = int(proc_status(pid, "VmHWM").split()[0])
    rss_kib = int(proc_status(pid, "VmRSS").split()[0])
    assert rss_kib < 256 * 1024, f"the process holds {rss_kib // 1024} MiB (peak {peak_kib // 1024} MiB)"
    assert get(server, "/other/info").status_code == 200


def test_a_reload_to_an_import_past_start_timeout_is_refused_and_the_old_config_serves(start_caddy):
    server = start_caddy(config(interpreters=1))
    pid = info(server, "/p")["pid"]
    done = server.reload("\n".join([
        block("/p/*", "wsgi", module="hang_import:app", isolation="process", start_timeout="2s"),
        block("/other/*", "wsgi"),
    ]), force=True, check=False)
    assert done.returncode != 0, f"the reload was accepted:\n{done.stdout}{done.stderr}"
    out = done.stdout + done.stderr
    assert "hang_import:app" in out and "start_timeout" in out, out
    assert info(server, "/p")["pid"] == pid
    assert get(server, "/other/info").status_code == 200
    # nothing half-started is left: the hanging process was ended
    assert wait_until(lambda: children_of(server.pid) == [pid], timeout=BOUND), children_of(server.pid)


def test_an_import_past_start_timeout_is_refused_with_where_it_was(caddy_must_refuse):
    failure = caddy_must_refuse("\n".join([
        block("/p/*", "wsgi", module="hang_import:app", isolation="process", start_timeout="2s"),
        block("/other/*", "wsgi"),
    ]))
    assert failure.returncode != 0
    assert "hang_import:app" in failure.output, failure.output
    assert "start_timeout" in failure.output and "spin_at_import" in failure.output, failure.output


def test_a_segfault_kills_only_its_process_whose_death_notice_is_in_the_log(start_caddy):
    server = start_caddy(config(interpreters=1))
    pid = info(server, "/p")["pid"]

    assert get(server, "/p/segv").status_code == 502

    assert server.wait_for_log("the process dies of SIGSEGV", timeout=BOUND), tail(server.log_text())
    notice = [line for line in server.log_text().splitlines() if "the process dies of SIGSEGV" in line][0]
    assert "GET /p/segv" in notice and "string_at" in notice, notice
    assert server.alive()
    assert wait_until(lambda: get(server, "/p/info").status_code == 200 and info(server, "/p")["pid"] != pid,
                      timeout=BOUND), tail(server.log_text())
    assert get(server, "/other/info").status_code == 200
