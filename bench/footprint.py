"""Memory points: Flask with 1, 2 and 4 interpreters idle, and the three-app
config (Flask, Django, FastAPI) served by Vivarium, caddy-snake and gunicorn +
uvicorn behind Caddy, as RSS and PSS of the whole process tree."""

from __future__ import annotations

import time

from config import Config
from environment import log
from load import run_wrk
from memory import memory_mib, outside_mappers
from plan import IDLE_RSS_INTERPRETERS, THREE_APP_FAMILIES, THREE_APP_WORKERS, THREE_APPS, three_apps, vivarium
from servers import Server


def settle(server: Server, prefixes=("",)) -> dict:
    """Load that reaches every worker of every app, a second of idling, then
    the tree's memory and who else maps its executables."""
    for prefix in prefixes:
        run_wrk(server.url + prefix + "/", 16, 1)
    time.sleep(1.0)
    pids = server.pids()
    rss, pss, anon = memory_mib(pids)
    return {"rss_mib": rss, "pss_mib": pss, "anon_mib": anon, "processes": len(pids),
            "outside_mappers": outside_mappers(pids)}


def measure_idle_rss(cfg: Config) -> dict:
    """Caddy serving the Flask app with 1, 2 and 4 interpreters."""
    out = {}
    for n in IDLE_RSS_INTERPRETERS:
        server = Server(vivarium("flask", "flask_app:app", n, venv="flask"), cfg, tag=f"idle-rss-{n}")
        try:
            server.start([cfg.endpoints["hello"]])
            out[str(n)] = settle(server)
            log(f"idle RSS, Flask, {n} interpreter(s): {out[str(n)]['rss_mib']} MiB")
        finally:
            server.stop()
    ns = IDLE_RSS_INTERPRETERS
    first, last = out[str(ns[0])]["rss_mib"], out[str(ns[-1])]["rss_mib"]
    out["per_extra_interpreter_mib"] = round((last - first) / (ns[-1] - ns[0]), 1)
    return out


def measure_three_apps(cfg: Config) -> list[dict]:
    """One row per (server family, workers of each app)."""
    prefixes = [f"/{p}" for p, *_ in THREE_APPS]
    rows = []
    for workers in THREE_APP_WORKERS:
        for family in THREE_APP_FAMILIES:
            spec = three_apps(family, workers)
            server = Server(spec, cfg)
            try:
                started = time.monotonic()
                server.start([cfg.endpoints["hello"]], timeout=180, prefixes=prefixes)
                ready_s = round(time.monotonic() - started, 2)
                row = {"server": spec.name, "label": spec.label, "family": family, "workers": workers,
                       "ready_s": ready_s, **settle(server, prefixes)}
            finally:
                server.stop()
            shared = {path: n for path, n in row["outside_mappers"].items() if n}
            log(f"three apps, {spec.label}: RSS {row['rss_mib']} MiB, PSS {row['pss_mib']} MiB, "
                f"{row['processes']} processes, ready in {ready_s} s"
                + (f"; WARNING: mapped outside the tree too: {shared}" if shared else ""))
            rows.append(row)
    return rows
