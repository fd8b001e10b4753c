"""Load: wrk (HTTP/1.1) and h2load (HTTP/2) runs, what they print, and the
measurements of the server taken around each run."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import tempfile

from config import Config
from environment import log
from memory import children_cpu_seconds, cpu_seconds, machine_busy_seconds, memory_mib
from plan import (H2_CONNS, H2_PAIRS, LOAD_THREADS, P99_TARGET_SERVERS, TARGET_CONNS, TARGETS, WORKLOADS, WRK_SCRIPT,
                  ServerSpec)
from servers import Server


def run_wrk(url: str, conns: int, duration: int, upload: int = 0) -> dict:
    env = dict(os.environ, BENCH_BODY_BYTES=str(upload))
    cmd = ["wrk", f"-t{min(LOAD_THREADS, conns)}", f"-c{conns}", f"-d{duration}s", "--timeout", "10s",
           "--latency", "-s", str(WRK_SCRIPT), url]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 60)
    match = re.search(r"^BENCH_JSON (.*)$", out.stdout, re.M)
    if out.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}{out.stderr}")
    return json.loads(match.group(1))


def percentile(sorted_values: list[int], q: float) -> int:
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, int(q / 100 * len(sorted_values)))]


def run_h2load(url: str, conns: int, duration: int) -> dict:
    """h2load over TLS (ALPN h2), one stream at a time per connection as wrk
    does; the latencies come from its per-request log. Returns what wrk's
    report.lua prints."""
    with tempfile.NamedTemporaryFile("r", prefix="bench-h2load-", suffix=".log") as reqlog:
        cmd = ["h2load", f"-t{min(LOAD_THREADS, conns)}", f"-c{conns}", "-m1", f"-D{duration}",
               "--log-file", reqlog.name, url]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
        done = re.search(r"^requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                         r"(\d+) errored, (\d+) timeout", out.stdout, re.M)
        took = re.search(r"^finished in ([\d.]+)s", out.stdout, re.M)
        traffic = re.search(r"^traffic: \S+ \((\d+)\) total", out.stdout, re.M)
        protocol = re.search(r"^Application protocol: (\S+)", out.stdout, re.M)
        if out.returncode != 0 or not (done and took and traffic):
            raise RuntimeError(f"h2load failed ({out.returncode}): {out.stdout}{out.stderr}")
        if not protocol or protocol.group(1) != "h2":
            raise RuntimeError(f"h2load did not speak h2 with {url}: {out.stdout}")
        durations, bad_status = [], 0
        for line in reqlog:
            fields = line.split()
            if len(fields) >= 3:
                durations.append(int(fields[2]))
                bad_status += not fields[1].startswith("2")
    durations.sort()
    succeeded, failed, errored, timeout = (int(done.group(i)) for i in (2, 3, 4, 5))
    return {"requests": succeeded, "duration_us": int(float(took.group(1)) * 1e6), "bytes": int(traffic.group(1)),
            "errors": {"connect": 0, "read": errored, "write": 0, "status": failed + bad_status, "timeout": timeout},
            "latency_us": {"mean": statistics.fmean(durations) if durations else 0,
                           "p50": percentile(durations, 50), "p90": percentile(durations, 90),
                           "p99": percentile(durations, 99), "max": durations[-1] if durations else 0}}


def run_load(server: Server, endpoint: str, conns: int, duration: int) -> dict:
    ep = server.cfg.endpoints[endpoint]
    if server.spec.tls:
        return run_h2load(server.url + ep.path, conns, duration)
    return run_wrk(server.url + ep.path, conns, duration, ep.upload)


def measure_point(server: Server, endpoint: str, conns: int) -> dict:
    cfg = server.cfg
    ep = cfg.endpoints[endpoint]
    if cfg.warmup > 0:
        run_load(server, endpoint, conns, cfg.warmup)
    pids = server.pids()
    cpu_before, load_before, (busy_before, steal_before) = \
        cpu_seconds(pids), children_cpu_seconds(), machine_busy_seconds()
    res = run_load(server, endpoint, conns, cfg.duration)
    cpu = cpu_seconds(pids) - cpu_before
    load_cpu = children_cpu_seconds() - load_before
    busy, steal = machine_busy_seconds()
    # CPU that neither the server nor the load generator used: other programs.
    other = max(0.0, busy - busy_before - cpu - load_cpu)
    rss, pss, anon = memory_mib(server.pids())
    requests = res["requests"]
    seconds = res["duration_us"] / 1e6
    errors = sum(res["errors"].values())
    lat = res["latency_us"]
    spec = server.spec
    point = {
        "server": spec.name, "label": spec.label, "family": spec.family, "app": spec.app,
        "interpreters": spec.interpreters, "protocol": "h2" if spec.tls else "http/1.1",
        "endpoint": endpoint, "conns": conns, "duration_s": round(seconds, 2),
        "requests": requests, "rps": round(requests / seconds, 1),
        # The load tools count bytes received; an upload's body goes the other way.
        "mib_per_s": round((res["bytes"] + requests * ep.upload) / seconds / 2**20, 1),
        "p50_ms": round(lat["p50"] / 1000, 3), "p90_ms": round(lat["p90"] / 1000, 3),
        "p99_ms": round(lat["p99"] / 1000, 3), "max_ms": round(lat["max"] / 1000, 3),
        "errors": res["errors"], "error_count": errors,
        "cpu_s": round(cpu, 2), "cpu_us_per_req": round(cpu / requests * 1e6, 1) if requests else None,
        "rss_mib": rss, "pss_mib": pss, "anon_mib": anon, "processes": len(pids),
        "client_cpu_s": round(load_cpu, 2),
        "other_cpu_pct": round(100 * other / seconds, 1),  # % of one core
        "steal_cpu_pct": round(100 * (steal - steal_before) / seconds, 1),
    }
    if errors:
        log(f"  WARNING {spec.name} {endpoint} c={conns}: {res['errors']} errors of {requests} requests")
    return point


def run_server(spec: ServerSpec, cfg: Config) -> list[dict]:
    """Starts one server, measures all its points, stops it."""
    plan = [(ep, c) for w in spec.workloads for ep, conns in WORKLOADS[w] for c in conns
            if cfg.conns is None or c in cfg.conns]
    log(f"{spec.name}: starting ({spec.label})")
    return measure_plan(spec, cfg, plan)


def measure_plan(spec: ServerSpec, cfg: Config, plan: list[tuple[str, int]], rnd: int | None = None) -> list[dict]:
    """Starts the server, measures each (endpoint, connections) of plan, stops it.
    Points of an extra target round carry its number."""
    server = Server(spec, cfg, tag=f"{spec.name}-round{rnd}" if rnd else "")
    points = []
    try:
        server.start(list(dict.fromkeys(cfg.endpoints[ep] for ep, _ in plan)))
        for ep, conns in plan:
            point = measure_point(server, ep, conns)
            if rnd:
                point["round"] = rnd
            points.append(point)
            log(f"  {f'round {rnd} {spec.name} ' if rnd else ''}{ep:8} c={conns:<3} {point['rps']:>9.0f} req/s"
                f"  p50 {point['p50_ms']:.2f} ms  p99 {point['p99_ms']:.2f} ms  cpu {point['cpu_us_per_req']} us/req"
                f"  rss {point['rss_mib']} MiB  others {point['other_cpu_pct']:.0f}% cpu")
    finally:
        server.stop()
    return points


def round_plan(cfg: Config) -> dict[str, list[tuple[str, int]]]:
    """server -> the (endpoint, connections) points the targets compare."""
    wanted: dict[str, list[tuple[str, int]]] = {}
    pairs = [(s, e, t.conns) for t in TARGETS for s, e in (t.num, t.den)]
    pairs += [(n, "hello", TARGET_CONNS) for n in P99_TARGET_SERVERS]
    pairs += [(n, "h2-hello", c) for pair in H2_PAIRS for n in pair for c in H2_CONNS]
    for name, endpoint, conns in pairs:
        if (cfg.conns is None or conns in cfg.conns) and (endpoint, conns) not in wanted.setdefault(name, []):
            wanted[name].append((endpoint, conns))
    return wanted


def measure_target_rounds(servers: list[ServerSpec], cfg: Config, total_rounds: int) -> list[dict]:
    """Rounds 2..total_rounds of the points the targets use, the servers in
    alternating order."""
    wanted = round_plan(cfg)
    specs = [s for s in servers if wanted.get(s.name)]
    points = []
    for rnd in range(2, total_rounds + 1):
        for spec in (specs if rnd % 2 else list(reversed(specs))):
            points += measure_plan(spec, cfg, wanted[spec.name], rnd)
    return points
