"""The targets of the run: each the median of the ratios its rounds measured,
met or not."""

from __future__ import annotations

import statistics

from plan import (IDLE_RSS_INTERPRETERS, P99_OVER_P50_TARGET, P99_TARGET_SERVERS, RSS_PER_INTERPRETER_TARGET_MIB,
                  TARGET_CONNS, TARGETS, THREE_APP_PSS_TARGET, THREE_APP_WORKERS)

MET = {True: "yes", False: "**no**", None: "not measured"}


def find_point(points, server, endpoint, conns=TARGET_CONNS):
    for p in points:
        if p["server"] == server and p["endpoint"] == endpoint and p["conns"] == conns:
            return p
    return None


def rounds_of(points, rounds, server, endpoint, conns=TARGET_CONNS) -> list[dict]:
    """The point of round 1 (the main run) and those of the extra rounds."""
    first = find_point(points, server, endpoint, conns)
    extra = [p for p in rounds if p["server"] == server and p["endpoint"] == endpoint and p["conns"] == conns]
    return ([first] if first else []) + sorted(extra, key=lambda p: p["round"])


def ratio_row(issue: str, target: str, ratios: list[float], parts: list[str], wanted: float, at_least: bool,
              unit: str = "x") -> dict:
    """A target row from the ratio each round measured: their median against wanted."""
    value = round(statistics.median(ratios), 2) if ratios else None
    detail = "; ".join(parts) or "not measured"
    if len(ratios) > 1:
        detail = f"median of {len(ratios)} rounds: " + detail
    met = None if value is None else (value >= wanted if at_least else value <= wanted)
    return {"issue": issue, "target": target, "value": value, "unit": unit,
            "wanted": f"{'>=' if at_least else '<='} {wanted:g}{unit}",
            "met": met, "ratios": [round(r, 3) for r in ratios], "detail": detail}


def compute_targets(points, idle_rss, rounds=(), three_apps=()) -> list[dict]:
    out = []
    for t in TARGETS:
        num = rounds_of(points, rounds, *t.num, t.conns)
        den = rounds_of(points, rounds, *t.den, t.conns)
        pairs = [(n, d) for n, d in zip(num, den) if d[t.metric]]
        ratios = [n[t.metric] / d[t.metric] for n, d in pairs]
        unit = "req/s " if t.metric == "rps" else "p99 ms "
        parts = [f"{n[t.metric]:.{0 if t.metric == 'rps' else 2}f} / {d[t.metric]:.{0 if t.metric == 'rps' else 2}f}"
                 f" = {r:.2f}" for (n, d), r in zip(pairs, ratios)]
        if parts:
            parts[0] = unit + parts[0]
        out.append(ratio_row(t.issue, t.name, ratios, parts, t.wanted, t.at_least))
    for workers in THREE_APP_WORKERS:
        ours = next((r for r in three_apps if r["family"] == "vivarium" and r["workers"] == workers), None)
        theirs = next((r for r in three_apps if r["family"] == "caddysnake" and r["workers"] == workers), None)
        ratios = [ours["pss_mib"] / theirs["pss_mib"]] if ours and theirs else []
        parts = [f"PSS {ours['pss_mib']:.1f} / {theirs['pss_mib']:.1f} MiB = {ratios[0]:.2f}"] if ratios else []
        out.append(ratio_row("20", f"Three apps, {workers} each: Vivarium's PSS vs caddy-snake's", ratios, parts,
                             THREE_APP_PSS_TARGET, at_least=False))
    per = idle_rss.get("per_extra_interpreter_mib") if idle_rss else None
    out.append({"issue": "earlier", "target": "RSS per extra Flask interpreter", "value": per, "unit": " MiB",
                "wanted": f"<= {RSS_PER_INTERPRETER_TARGET_MIB} MiB",
                "met": None if per is None else per <= RSS_PER_INTERPRETER_TARGET_MIB,
                "detail": "idle, " + ", ".join(f"{n} interp {idle_rss[str(n)]['rss_mib']} MiB"
                                                for n in IDLE_RSS_INTERPRETERS) if per is not None else "not measured"})
    for server, label in P99_TARGET_SERVERS.items():
        ps = [p for p in rounds_of(points, rounds, server, "hello") if p["p50_ms"]]
        ratios = [p["p99_ms"] / p["p50_ms"] for p in ps]
        parts = [f"p50 {p['p50_ms']:.2f} ms, p99 {p['p99_ms']:.2f} ms = {r:.2f}" for p, r in zip(ps, ratios)]
        out.append(ratio_row("earlier", f"p99 / p50 at {TARGET_CONNS} conns ({label})", ratios, parts,
                             P99_OVER_P50_TARGET, at_least=False))
    return out
