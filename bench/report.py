"""docs/benchmarks/README.md from results.json, section by section, and the
charts (bench/charts.py, run in the charts venv)."""

from __future__ import annotations

import statistics
import subprocess
from pathlib import Path

from plan import (BENCH, CPU_CONNS, H2_CONNS, H2_PAIRS, HELLO_CONNS, IDLE_RSS_INTERPRETERS, LOAD_THREADS, TARGET_CONNS,
                  TRANSFER_CONNS)
from targets import MET, find_point, rounds_of

CHARTS = [
    ("hello_64.png", f"Hello world, requests/s at {TARGET_CONNS} connections"),
    ("scaling.png", "Hello world, requests/s by connections"),
    ("cpu_bound.png", "CPU-bound endpoint: 1 vs 2 interpreters"),
    ("cpu_per_request.png", f"Server CPU per request at {TARGET_CONNS} connections"),
    ("three_apps.png", "Three apps in one config: PSS of the whole process tree"),
]

VERSION_KEYS = ["go", "python", "libpython", "caddy", "caddy-snake's caddy", "wrk", "h2load", "caddysnake",
                "gunicorn", "uvicorn", "uvloop", "httptools", "granian", "flask", "werkzeug", "django", "starlette",
                "fastapi", "pydantic", "matplotlib"]


def fmt(value, digits=0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def section(title: str, intro: str, columns: list[str], rows, numeric: bool = True) -> list[str]:
    """A heading, its text and a table; with numeric, all columns but the first align right."""
    align = " | ".join("---:" if numeric and i else "---" for i in range(len(columns)))
    return [f"## {title}", "", intro, "", "| " + " | ".join(columns) + " |", f"| {align} |",
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]


def label_of(points, server) -> str:
    return next(p["label"] for p in points if p["server"] == server)


def machine_section(results: dict) -> list[str]:
    meta, points = results["meta"], results["points"]
    m, v = meta["machine"], meta["versions"]
    lines = [
        "## Machine and versions", "",
        f"{m['nproc']} cores, shared during the run with the load generator and with other programs (builds and "
        "tests of other work on this machine): their CPU is in \"Other programs' CPU\" and in the \"Others\" column "
        "of every point, beside the load average before and after. Ratios within one run, of alternating rounds, "
        "are what these numbers are for, not the absolute req/s.", "",
        "| | |", "| --- | --- |",
        f"| Date | {meta['date']} |",
        f"| Run | {meta.get('variant', 'full')}; took {meta['took_s']:.0f} s |",
        f"| Machine | {m['nproc']} CPUs, {m['cpu_model']}, {m['memory_gib']} GiB, Linux {m['kernel']} |",
        f"| Load average before / after | {' '.join(f'{x:.2f}' for x in m['loadavg_start'])} / "
        f"{' '.join(f'{x:.2f}' for x in m.get('loadavg_end', []))} |",
    ]
    others = [p["other_cpu_pct"] for p in points]
    if others:
        lines.append(f"| Other programs' CPU during the runs | mean {sum(others) / len(others):.0f}%, "
                     f"max {max(others):.0f}% of one core (0 on a quiet machine; see \"Others\" below) |")
    lines += [f"| {key} | {v[key]} |" for key in VERSION_KEYS if key in v]
    lines += [f"| Each point | {meta['warmup_s']:g} s warm-up, then {meta['duration_s']:g} s measured; "
              f"wrk -t{LOAD_THREADS} --latency (HTTP/1.1), h2load -t{LOAD_THREADS} -m1 (HTTP/2) |",
              f"| /cpu request | {meta.get('cpu_work_ms')} ms of pure Python (measured alone) |"]
    return lines


def targets_section(results: dict) -> list[str]:
    rounds = results["meta"].get("target_rounds", 1)
    intro = (f"Computed from this run, at {TARGET_CONNS} connections unless said otherwise; met or not, as measured. "
             + (f"The servers a target compares ran {rounds} times in all (the main run, then rounds in alternating "
                "order), and the target is the median of the rounds' ratios: the speed of a shared machine drifts by "
                "tens of percent within minutes, and moves all servers alike only over seconds."
                if rounds > 1 else
                "Each server ran once: a ratio near a target may fall either side of it in another run."))
    rows = [(t.get("issue", ""), t["target"], "-" if t["value"] is None else f"{t['value']}{t.get('unit', 'x')}",
             t["wanted"], MET[t["met"]], t["detail"]) for t in results["targets"]]
    return section("Targets", intro, ["Issue", "Target", "Measured", "Wanted", "Met", "From"], rows, numeric=False)


def hello_section(points: list[dict]) -> list[str]:
    hello = list(dict.fromkeys(p["server"] for p in points if p["endpoint"] == "hello"))
    if not hello:
        return []
    rows = []
    for s in hello:
        at = find_point(points, s, "hello")
        rows.append([label_of(points, s), *(fmt(p and p["rps"]) for p in (find_point(points, s, "hello", c)
                                                                         for c in HELLO_CONNS)),
                     fmt(at and at["p50_ms"], 2), fmt(at and at["p99_ms"], 2), fmt(at and at["cpu_us_per_req"]),
                     fmt(at and at["rss_mib"])])
    return section("Hello world", "Requests per second by connections; latency, server CPU per request and RSS at "
                   f"{TARGET_CONNS} connections. \"+ Caddy\": behind our binary's `reverse_proxy`; CPU and RSS then "
                   "include Caddy.",
                   ["Server", *(f"c={c}" for c in HELLO_CONNS), "p50 ms", "p99 ms", "CPU µs/req", "RSS MiB"], rows)


def h2_section(results: dict) -> list[str]:
    points, rounds = results["points"], results.get("target_rounds", [])
    h2 = [p for p in points if p["endpoint"] == "h2-hello"]
    lines = section("HTTP/2", f"Hello over TLS and HTTP/2 (ALPN h2), h2load at {', '.join(map(str, H2_CONNS))} "
                    "connections, one stream at a time on each (as wrk keeps one request in flight per connection); "
                    "each server presents the same self-signed certificate. Latencies from h2load's per-request log. "
                    "The ratios below are medians of the alternating rounds.",
                    ["Server", "Conns", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "Errors"],
                    [(p["label"], p["conns"], fmt(p["rps"]), fmt(p["p50_ms"], 2), fmt(p["p99_ms"], 2),
                      fmt(p["cpu_us_per_req"]), p["error_count"]) for p in h2])
    for ours, theirs in H2_PAIRS:
        for c in H2_CONNS:
            pairs = [(a, b) for a, b in zip(rounds_of(points, rounds, ours, "h2-hello", c),
                                            rounds_of(points, rounds, theirs, "h2-hello", c)) if b["rps"]]
            if pairs:
                ratios = [a["rps"] / b["rps"] for a, b in pairs]
                lines += ["", f"{pairs[0][0]['label']} / {pairs[0][1]['label']} at {c} connections: "
                          f"**{statistics.median(ratios):.2f}x** req/s ({len(ratios)} rounds: "
                          + ", ".join(f"{r:.2f}" for r in ratios) + ")."]
    return lines


def points_section(points: list[dict]) -> list[str]:
    return section("Every point", "\"Others\": CPU used meanwhile by programs other than the server and the load "
                   "generator, in % of one core (noise; 0 on a quiet machine).",
                   ["Server", "Endpoint", "Conns", "req/s", "MiB/s", "p50 ms", "p99 ms", "CPU µs/req", "RSS MiB",
                    "PSS MiB", "Errors", "Others"],
                   [(p["label"], p["endpoint"], p["conns"], fmt(p["rps"]), fmt(p["mib_per_s"]), fmt(p["p50_ms"], 2),
                     fmt(p["p99_ms"], 2), fmt(p["cpu_us_per_req"]), fmt(p["rss_mib"]), fmt(p["pss_mib"]),
                     p["error_count"], f"{fmt(p['other_cpu_pct'])}%") for p in points])


def three_apps_section(rows: list[dict]) -> list[str]:
    return section(
        "Three apps in one config",
        "Flask, Django and FastAPI, each from its own venv, under `/flask/`, `/django/` and `/fastapi/` of one site, "
        "the same number of workers for each app: Vivarium (`isolation auto`: Flask and Django in own-GIL "
        "interpreters, FastAPI in child processes), caddy-snake (its Caddy and one Python process per worker), and "
        "gunicorn sync (Flask, Django) and uvicorn (FastAPI) behind our Caddy's `reverse_proxy`. After 1 s at 16 "
        "connections on each app and 1 s idle: RSS and PSS summed over the whole process tree, children included. "
        "Every python the venvs run is one private copy of the executable, and each Caddy binary is evicted from "
        "the page cache before it starts, so no process outside the tree maps the tree's executables (\"Outside "
        "mappers\", checked in `/proc/*/maps` at the measurement) and PSS counts their pages whole.",
        ["Server", "Workers each", "Processes", "RSS MiB", "PSS MiB", "Anonymous MiB", "Ready s", "Outside mappers"],
        [(r["label"], r["workers"], r["processes"], fmt(r["rss_mib"], 1), fmt(r["pss_mib"], 1), fmt(r["anon_mib"], 1),
          fmt(r["ready_s"], 2), sum(r["outside_mappers"].values())) for r in rows])


def idle_section(idle: dict) -> list[str]:
    return section(
        "Memory per interpreter",
        "Caddy serving the Flask app, after a 1 s warm-up at 16 connections and 1 s idle. bin/caddy is evicted from "
        "the page cache before each start: otherwise a freshly linked binary, held in large folios, maps about 16 MiB "
        "more of itself. Anonymous memory (Go and C heaps, Python) does not depend on that.",
        ["Interpreters", "RSS MiB", "PSS MiB", "Anonymous MiB"],
        [(n, idle[str(n)]["rss_mib"], idle[str(n)]["pss_mib"], fmt(idle[str(n)].get("anon_mib"), 1))
         for n in IDLE_RSS_INTERPRETERS]) + ["", f"Per extra interpreter: **{idle['per_extra_interpreter_mib']} MiB**."]


def go_section(go: dict) -> list[str]:
    return section(
        "Bridge without HTTP (Go benchmark)",
        "`plugin/bridge_bench_test.go`: a no-op app through `ServeHTTP`, the scheduler and a C worker thread (WSGI) "
        "or the event loop (ASGI), with `httptest.ResponseRecorder`; no sockets. `serial`: one request at a time, 1 "
        "interpreter, 1 thread (latency of a round trip). `parallel-2interp`: handler goroutines in parallel, 2 "
        "interpreters x 4 threads (wall time per request, i.e. 1/throughput). `BridgeProcess*`: the same through a "
        "child process and its socket (`isolation process`; `parallel-2proc`: 2 processes x 4 threads); their "
        "difference to `Bridge*` is the transport's cost. CPU counts every process.",
        ["Benchmark", "ns/op", "CPU us/op", "B/op", "allocs/op"],
        [(name, fmt(r["ns_per_op"]), fmt(r.get("cpu_us_per_op"), 1), r["bytes_per_op"], r["allocs_per_op"])
         for name, r in go.items()])


def charts_section(out: Path) -> list[str]:
    lines = ["## Charts", ""]
    for png, title in CHARTS:
        if (out / png).exists():
            lines += [f"![{title}]({png})", ""]
    return lines


def method_section(meta: dict) -> list[str]:
    return [
        "## Method", "",
        "- **Load**: wrk (closed loop: each connection sends its next request when the previous "
        f"answer arrived), {LOAD_THREADS} thread, on the same machine; it competes with the server for "
        "the cores, which is why CPU per request is reported beside req/s. Closed-loop tools "
        "under-report tail latency at saturation; p99 here is the p99 of a saturated server. HTTP/2: "
        "h2load, the same way.",
        "- **CPU per request**: utime + stime from `/proc/<pid>/stat` of every serving process (Caddy, "
        "gunicorn/uvicorn/Granian/caddy-snake and their workers), read before and after the measured run, "
        "divided by the requests of that run. The load generator is not counted.",
        "- **RSS**: summed `VmRSS` of the same processes after the run. Forked workers share pages "
        "which RSS counts once per process; PSS (`/proc/<pid>/smaps_rollup`) splits them.",
        "- **Apps**: `bench/apps/`. The same Flask, Starlette and FastAPI code runs in Vivarium and in the peers. "
        "Vivarium runs 4 threads per interpreter (the default); gunicorn gthread 2 workers x 4 threads; "
        "Granian's defaults besides 2 workers (uvloop for ASGI); uvicorn 2 workers with uvloop and "
        "httptools; caddy-snake 0.6.4 its defaults besides `workers` (sync WSGI, native asyncio ASGI). "
        "Vivarium's FastAPI runs in `isolation process` (pydantic_core refuses own-GIL interpreters; "
        "`isolation auto` picks it) or, with 1 interpreter, also in `isolation main`.",
        f"- **Heavy points** use fewer connection counts: /cpu at {', '.join(map(str, CPU_CONNS))}; "
        f"the 1 MiB download and 10 MiB upload at {', '.join(map(str, TRANSFER_CONNS))}.",
        "- Every server is checked before it is measured: each endpoint must answer 200 with the "
        "expected body. Server logs of the last run are in `docs/benchmarks/raw/` (not committed).",
        f"- **Command**: `{meta.get('command', 'make bench')}`.",
        "",
    ]


def markdown(results: dict, out: Path) -> str:
    points, meta = results["points"], results["meta"]
    sections = [
        ["# Benchmarks", "",
         "Generated by `make bench` (`bench/run.py`); raw numbers in [`results.json`](results.json).",
         "Re-run it to refresh this page. All servers ran on the same machine as the load generator,",
         "one after the other in one session, Vivarium and its peers alternating."],
        machine_section(results), targets_section(results), hello_section(points),
        h2_section(results) if any(p["endpoint"] == "h2-hello" for p in points) else [],
        three_apps_section(results["three_apps"]) if results.get("three_apps") else [], points_section(points),
        idle_section(results["idle_rss"]) if results.get("idle_rss") else [],
        go_section(results["go_bench"]) if results.get("go_bench") else [], charts_section(out),
        method_section(meta),
    ]
    return "\n\n".join("\n".join(s) for s in sections if s)


def make_charts(venv: Path, out: Path) -> None:
    done = subprocess.run([str(venv / "bin" / "python"), str(BENCH / "charts.py"), str(out / "results.json"),
                           str(out)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError("bench/charts.py failed:\n" + done.stdout + done.stderr)
