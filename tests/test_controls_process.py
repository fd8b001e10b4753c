"""The controls in `isolation process`: the app's `env` reaches its os.environ in its
process (not Caddy's, nor C getenv(), as in Caddy's process), a request past its
`timeout` gets 504 while its process interrupts it and logs where it was, a process whose code does not come back is
killed and another started, SIGTERM is bounded, and an import past `start_timeout`
is refused with where it was. An app in the Caddy process serves throughout."""

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from controls_support import block, env_of, info, log_entries
from support import tail, wait_until

BOUND = 60


def config(**options):
    options.setdefault("timeout", "2s")
    return "\n".join([
        block("/p/*", "wsgi", "env VV_PROCESS in-the-process", isolation="process", threads=2, **options),
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


def test_sigterm_ends_the_process_app_whatever_it_runs(caddy_launcher):
    server = caddy_launcher.start(config())
    with ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: httpx.get(server.base_url + "/p/spin", timeout=BOUND))
        assert server.wait_for_log("controls: /spin begins"), tail(server.log_text())
        started = time.monotonic()
        code = server.stop(timeout=60)
        took = time.monotonic() - started
    assert code == 0, f"exit code {code}:\n{tail(server.log_text())}"
    assert took < 40, f"SIGTERM took {took:.1f} s"


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
