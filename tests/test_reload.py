"""`caddy reload` replaces apps in the running process: new code is served, old
interpreters and their threads are gone, a bad config leaves the old apps serving;
SIGTERM ends the process cleanly."""

import time

from support import app_dir, python_block

RELOADS = 20
# The Go runtime keeps idle OS threads (Ms) it created for cgo calls and syscalls and
# may add a few under new load patterns; a leak of even one thread per two reloads
# exceeds this over 20 reloads.
THREAD_TOLERANCE = 4


VARIANTS = {
    # variant: (app at /t/, interpreters at /p/, threads at /p/)
    "A": ("twin_a", 2, 2),
    "B": ("twin_b", 3, 3),
}


def config(variant):
    """Two configs that really differ: another app at /t/, another number of
    interpreters and threads at /p/."""
    twin, interpreters, threads = VARIANTS[variant]
    return "\n".join(
        [
            python_block("/t/*", "main:app", working_dir=app_dir(twin)),
            python_block(
                "/p/*", "probe:app", working_dir=app_dir("probe"),
                interpreters=interpreters, threads=threads,
            ),
        ]
    )


def extra_interpreters(variant):
    """Interpreters of `variant` beyond those of variant A."""
    return VARIANTS[variant][1] - VARIANTS["A"][1]


def check_serving(server, variant):
    assert server.get_json("/t/")["who"] == f"twin {variant}"
    info = server.get_json("/p/info")
    assert info["pid"] == server.pid
    return info


def interpreter_count(server):
    return server.get_json("/p/info")["interp_count"]


def wait_for(predicate, timeout=10):
    """Bounded wait for an eventually-true condition (not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_reloads_replace_apps_without_leaking_threads_or_interpreters(start_caddy, measurement):
    server = start_caddy(config("A"))
    check_serving(server, "A")
    initial_interpreters = interpreter_count(server)
    # warm-up: one full cycle, so the Go runtime has the threads a reload needs
    for variant in ("B", "A"):
        server.reload(config(variant))
        check_serving(server, variant)
    time.sleep(1)
    interpreters_before = interpreter_count(server)
    threads_before = server.threads()
    # main interpreter + 1 (/t/) + 2 (/p/), and the warm-up reloads left none behind
    assert interpreters_before >= 4, interpreters_before
    assert interpreters_before == initial_interpreters

    for i in range(RELOADS):
        variant = "B" if i % 2 == 0 else "A"
        server.reload(config(variant))
        check_serving(server, variant)
        expected = interpreters_before + extra_interpreters(variant)
        assert wait_for(lambda: interpreter_count(server) == expected), (
            f"after reload {i + 1} (to {variant}): {interpreter_count(server)} interpreters, "
            f"expected {expected}"
        )
    assert variant == "A"

    wait_for(lambda: server.threads() <= threads_before + THREAD_TOLERANCE)
    threads_after = server.threads()
    measurement(
        f"{RELOADS} reloads: threads {threads_before} -> {threads_after}, "
        f"interpreters {interpreters_before} -> {interpreter_count(server)}"
    )
    assert interpreter_count(server) == interpreters_before
    assert threads_after <= threads_before + THREAD_TOLERANCE, (
        f"threads grew from {threads_before} to {threads_after} over {RELOADS} reloads"
    )
    assert server.alive()


def test_a_failed_reload_keeps_the_old_apps_serving(start_caddy):
    server = start_caddy(config("A"))
    interpreters_before = interpreter_count(server)
    bad = config("B") + "\n" + python_block(
        "/bad/*", "vivarium_no_such_module:app", working_dir=app_dir("probe")
    )
    done = server.reload(bad, check=False)
    assert done.returncode != 0
    assert "vivarium_no_such_module" in done.stdout + done.stderr, done.stdout + done.stderr

    check_serving(server, "A")
    assert wait_for(lambda: interpreter_count(server) == interpreters_before), (
        "the refused config left interpreters behind"
    )
    server.reload(config("B"))
    check_serving(server, "B")


def test_a_forced_reload_imports_the_apps_code_again(start_caddy, tmp_path):
    appdir = tmp_path / "app"
    appdir.mkdir()
    source = (
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [{body!r}]\n"
    )
    (appdir / "versioned.py").write_text(source.format(body=b"version one"))
    body = python_block("/*", "versioned:app", working_dir=appdir)
    server = start_caddy(body)
    assert server.get("/").content == b"version one"

    (appdir / "versioned.py").write_text(source.format(body=b"version two, longer"))
    server.reload(body, force=True)
    assert server.get("/").content == b"version two, longer"


def test_sigterm_ends_the_process_cleanly_after_serving_and_reloading(caddy_launcher):
    server = caddy_launcher.start(config("A"))
    check_serving(server, "A")
    server.reload(config("B"))
    check_serving(server, "B")
    for _ in range(10):
        server.get_json("/p/info")
    code = server.stop()
    log = server.log_text()
    assert code == 0, f"exit code {code} after SIGTERM:\n{log[-4000:]}"
    for sign in ("Fatal Python error", "munmap_chunk", "panic:", "SIGSEGV", "SIGABRT"):
        assert sign not in log, f"{sign!r} in the log:\n{log[-4000:]}"
