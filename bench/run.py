#!/usr/bin/env python3
"""`make bench`: Vivarium side by side with caddy-snake, gunicorn, uvicorn and Granian.

Every server is started here, checked (its answer must be right before it is
measured), driven by wrk (HTTP/1.1) or h2load (HTTP/2) from this machine at
fixed connection counts, and stopped. Servers are measured one after the other
in one session, Vivarium and its peers alternating, so that their ratios hold
even on a noisy machine.

For each point: requests/s, p50/p99 latency, server CPU seconds per request
(user + system time of every serving process: Caddy, proxied servers and their
workers) and the RSS of those processes after the run. Then the memory points
(Flask idle; Flask + Django + FastAPI in one config) and the Go bridge benchmark.

Output: docs/benchmarks/results.json (raw), docs/benchmarks/README.md (tables,
targets) and PNG charts; logs of the servers in docs/benchmarks/raw/.

Only the standard library is used here; the servers and charts get their own
venvs (bench/requirements/*.txt, cached in bench/.venvs by requirements hash).
The parts: plan.py (what is measured), environment.py (tools, venvs),
servers.py (starting them), load.py (wrk, h2load), memory.py (/proc),
footprint.py (memory points), gobench.py, targets.py, report.py.

    python3.14 bench/run.py                      # what `make bench` runs
    python3.14 bench/run.py --quick              # short points, for development
    python3.14 bench/run.py --only flask --quick # servers whose name contains "flask"
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path

from config import Config
from environment import (command_output, ensure_tools, ensure_venvs, log, machine_info, measure_cpu_work,
                         private_libpython, self_signed_cert, versions)
from footprint import measure_idle_rss, measure_three_apps
from gobench import run_go_bench
from load import measure_target_rounds, run_server
from plan import DOCS, DURATION, ROOT, SERVERS, TARGET_ROUNDS, THREE_APP_FAMILIES, THREE_APP_WORKERS, WARMUP, \
    endpoints, three_apps
from report import make_charts, markdown
from servers import stop_all
from targets import MET, compute_targets


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--caddy", default=str(ROOT / "bin" / "caddy"), help="the binary under test")
    ap.add_argument("--duration", type=int, default=DURATION, help="seconds measured per point")
    ap.add_argument("--warmup", type=int, default=WARMUP, help="seconds of warm-up per point")
    ap.add_argument("--quick", action="store_true", help="1 s points, 1, 16 and 64 connections: for development")
    ap.add_argument("--only", action="append",
                    help="run the server of this name, or those whose name contains it (repeatable); "
                         "three-apps: the three-app memory point")
    ap.add_argument("--conns", help="comma-separated connection counts to keep")
    ap.add_argument("--target-rounds", type=int, default=TARGET_ROUNDS,
                    help="times the servers a target compares are measured, the main run included")
    ap.add_argument("--skip-go", action="store_true", help="skip the Go benchmark")
    ap.add_argument("--skip-idle-rss", action="store_true", help="skip the memory-per-interpreter runs")
    ap.add_argument("--skip-three-apps", action="store_true", help="skip the three-app memory point")
    ap.add_argument("--go-benchtime", help="go test -benchtime (default 2s, 0.5s with --quick)")
    ap.add_argument("--out", default=str(DOCS), help="where results.json, README.md and charts go")
    ap.add_argument("--report-only", action="store_true",
                    help="measure nothing: write README.md and the charts again from the results.json in --out")
    args = ap.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 1, 1
        args.conns = args.conns or "1,16,64"
        args.go_benchtime = args.go_benchtime or "0.5s"
        args.target_rounds = 1
    args.go_benchtime = args.go_benchtime or "2s"
    return args


def variant(args) -> str:
    """How this run differs from the full one, for the report."""
    if args.quick:
        return "quick (--quick: 1 s points, one round; a check, not numbers to quote)"
    changed = [f"{flag} {value}" for flag, value, full in (
        ("--duration", args.duration, DURATION), ("--warmup", args.warmup, WARMUP),
        ("--target-rounds", args.target_rounds, TARGET_ROUNDS)) if value != full]
    changed += [f"--conns {args.conns}"] if args.conns else []
    changed += [f"--only {o}" for o in args.only or []]
    changed += [flag for flag in ("--skip-go", "--skip-idle-rss", "--skip-three-apps")
                if getattr(args, flag[2:].replace("-", "_"))]
    return "short (" + ", ".join(changed) + "; the full run: `make bench`)" if changed else "full"


def pick_servers(only):
    """A whole name picks that server alone; a part of one, every server with it."""
    names = {s.name for s in SERVERS}
    return [s for s in SERVERS if not only or any(o == s.name or (o not in names and o in s.name) for o in only)]


def venv_names(servers, three: bool) -> set[str]:
    specs = list(servers) + ([three_apps(f, w) for f in THREE_APP_FAMILIES for w in THREE_APP_WORKERS]
                             if three else [])
    names = {"flask", "charts"}
    for s in specs:
        names |= {s.venv} if s.venv else set()
        names |= set(s.venvs)
        names |= {"caddysnake"} if s.host == "caddysnake" else set()
        names |= {"wheel"} if s.host == "wheel" else set()
    return names


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    caddy = Path(args.caddy).resolve()
    if not caddy.exists():
        sys.exit(f"bench: {caddy} not found; run make build")
    python = os.environ.get("PYTHON") or command_output([str(ROOT / "scripts" / "find-python.sh")])
    if not python:
        sys.exit("bench: no embeddable Python found (scripts/find-python.sh)")
    cfg = Config(caddy=caddy, python=python, out=out, duration=args.duration, warmup=args.warmup,
                 conns={int(c) for c in args.conns.split(",")} if args.conns else None)
    cfg.raw.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        cfg.venvs = ensure_venvs(["charts"], cfg.python)
        write_report(cfg, json.loads((cfg.out / "results.json").read_text()))
        return 0
    try:
        return measure(cfg, args)
    finally:
        stop_all(cfg)


def write_report(cfg: Config, results: dict) -> None:
    make_charts(cfg.venvs["charts"], cfg.out)
    (cfg.out / "README.md").write_text(markdown(results, cfg.out))


def measure(cfg: Config, args) -> int:
    started = time.monotonic()
    ensure_tools()
    servers = pick_servers(args.only)
    # --only three-apps: the three-app point alone.
    three = not args.skip_three_apps and (not args.only or "three-apps" in args.only)
    cfg.venvs = ensure_venvs(sorted(venv_names(servers, three)), cfg.python)
    cfg.endpoints = endpoints()
    cfg.tls = self_signed_cert(cfg.raw)
    cfg.lib_path = private_libpython(cfg.caddy)
    target_rounds = max(1, args.target_rounds)
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "make bench" + (f' BENCH_ARGS="{shlex.join(sys.argv[1:])}"' if sys.argv[1:] else ""),
        "variant": variant(args),
        "machine": machine_info(),
        "versions": versions(cfg.python, cfg.caddy, cfg.venvs),
        "duration_s": args.duration, "warmup_s": args.warmup,
        "target_rounds": target_rounds,
        "cpu_work_ms": measure_cpu_work(cfg.venvs["flask"]),
    }
    log(f"machine: {meta['machine']}")
    log(f"versions: {meta['versions']}")

    points = [p for spec in servers for p in run_server(spec, cfg)]
    rounds = []
    if target_rounds > 1:
        log(f"targets: {target_rounds - 1} more rounds of the servers they compare")
        rounds = measure_target_rounds(servers, cfg, target_rounds)
    three_rows = measure_three_apps(cfg) if three else []
    idle_rss = {} if args.skip_idle_rss else measure_idle_rss(cfg)
    go_bench = {} if args.skip_go else run_go_bench(cfg, args.go_benchtime)

    meta["machine"]["loadavg_end"] = os.getloadavg()
    meta["took_s"] = round(time.monotonic() - started)
    results = {"meta": meta, "points": points, "target_rounds": rounds, "idle_rss": idle_rss,
               "three_apps": three_rows, "go_bench": go_bench,
               "targets": compute_targets(points, idle_rss, rounds, three_rows)}
    (cfg.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    write_report(cfg, results)
    others = [p["other_cpu_pct"] for p in points] or [0]
    log(f"other programs used {sum(others) / len(others):.0f}% of one core on average during the "
        f"measured runs (max {max(others):.0f}%); load average {meta['machine']['loadavg_start']} before, "
        f"{meta['machine']['loadavg_end']} after")
    for t in results["targets"]:
        log(f"target [{t['issue']}] {t['target']}: {t['value']} (wanted {t['wanted']}): {MET[t['met']]}")
    log(f"done in {time.monotonic() - started:.0f} s; see {os.path.relpath(cfg.out / 'README.md')}")
    return 0


if __name__ == "__main__":
    # Servers run in their own sessions: Ctrl-C reaches only this script,
    # which stops them (main's finally: stop_all) before it exits.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
    except RuntimeError as err:
        log(f"FAILED: {err}")
        sys.exit(1)
