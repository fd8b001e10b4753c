"""Charts of a benchmark run: python charts.py results.json OUTDIR (run by bench/run.py
with the venv of bench/requirements/charts.txt)."""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"caddy": "#7f7f7f", "vivarium": "#2ca02c", "gunicorn": "#1f77b4",
          "uvicorn": "#9467bd", "granian": "#ff7f0e",
          "caddysnake": "#d62728", "proxy": "#1f77b4"}
TARGET_CONNS = 64


CMAPS = {"caddy": "Greys", "vivarium": "Greens", "gunicorn": "Blues", "uvicorn": "Purples", "granian": "Oranges",
         "caddysnake": "Reds"}
MARKERS = "osD^v<>ph*"


def server_styles(points):
    """A shade of its family's colour and a marker for each server, so that
    several servers of one family stay apart in a line chart."""
    by_family = {}
    for p in points:
        by_family.setdefault(p["family"], [])
        if p["server"] not in by_family[p["family"]]:
            by_family[p["family"]].append(p["server"])
    styles = {}
    for family, servers in by_family.items():
        cmap = matplotlib.colormaps[CMAPS.get(family, "Greys")]
        for i, server in enumerate(servers):
            shade = 0.75 if len(servers) == 1 else 0.45 + 0.5 * i / (len(servers) - 1)
            styles[server] = {"color": cmap(shade), "marker": MARKERS[i % len(MARKERS)]}
    return styles


def points_of(results, endpoint):
    return [p for p in results["points"] if p["endpoint"] == endpoint]


def servers_in_order(points):
    return list(dict.fromkeys(p["server"] for p in points))


def bar_at(results, out: Path, value: str, xlabel: str, filename: str, title: str):
    """Horizontal bars, one per server, of `value` for hello at TARGET_CONNS."""
    pts = [p for p in points_of(results, "hello") if p["conns"] == TARGET_CONNS and p.get(value) is not None]
    if not pts:
        return
    pts.sort(key=lambda p: p[value])
    fig, ax = plt.subplots(figsize=(9, 0.38 * len(pts) + 1.2))
    bars = ax.barh([p["label"] for p in pts], [p[value] for p in pts],
                   color=[COLORS.get(p["family"], "#333") for p in pts])
    ax.bar_label(bars, labels=[f"{p[value]:,.0f}" for p in pts], padding=3, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.margins(x=0.15)
    fig.tight_layout()
    fig.savefig(out / filename, dpi=110)
    plt.close(fig)


def scaling(results, out: Path):
    """req/s by connections: WSGI servers on the left, ASGI on the right; the
    Caddy ceiling on both."""
    pts = points_of(results, "hello")
    if not pts:
        return
    conns = sorted({p["conns"] for p in pts})
    panels = [("WSGI", {"raw", "flask", "django"}), ("ASGI", {"starlette", "fastapi"})]
    styles = server_styles(pts)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), sharey=True)
    for ax, (title, apps) in zip(axes, panels):
        for server in servers_in_order(pts):
            mine = sorted((p for p in pts if p["server"] == server), key=lambda p: p["conns"])
            first = mine[0]
            if first["family"] != "caddy" and first["app"] not in apps:
                continue
            ax.plot([p["conns"] for p in mine], [p["rps"] for p in mine], label=first["label"],
                    linestyle="-" if first["family"] in ("vivarium", "caddy") else "--", **styles[server])
        ax.set_xscale("log", base=2)
        ax.set_xticks(conns, labels=[str(c) for c in conns])
        ax.set_xlabel("connections")
        ax.set_title(f"{title}: requests/s by connections")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("requests/s")
    fig.tight_layout()
    fig.savefig(out / "scaling.png", dpi=110)
    plt.close(fig)


def cpu_bound(results, out: Path):
    pts = points_of(results, "cpu")
    if not pts:
        return
    servers = servers_in_order(pts)
    conns = sorted({p["conns"] for p in pts})
    width = 0.8 / len(servers)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, server in enumerate(servers):
        mine = {p["conns"]: p for p in pts if p["server"] == server}
        first = next(iter(mine.values()))
        xs = [j + i * width for j in range(len(conns))]
        ys = [mine[c]["rps"] if c in mine else 0 for c in conns]
        bars = ax.bar(xs, ys, width, label=first["label"], color=COLORS.get(first["family"], "#333"),
                      alpha=1.0 if first["family"] == "vivarium" else 0.6,
                      hatch="//" if "1 interp" in first["label"] else None)
        ax.bar_label(bars, labels=[f"{y:,.0f}" for y in ys], fontsize=7)
    ax.set_xticks([j + width * (len(servers) - 1) / 2 for j in range(len(conns))],
                  labels=[f"{c} conns" for c in conns])
    ax.set_ylabel("requests/s")
    ms = results["meta"].get("cpu_work_ms")
    ax.set_title(f"CPU-bound endpoint ({ms} ms of pure Python per request)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "cpu_bound.png", dpi=110)
    plt.close(fig)


def three_apps(results, out: Path):
    """RSS and PSS of the three-app config, grouped by workers of each app."""
    rows = results.get("three_apps") or []
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.4))
    labels = [r["label"] for r in rows]
    ax.barh(labels, [r["rss_mib"] for r in rows], color="#dddddd", label="RSS")
    bars = ax.barh(labels, [r["pss_mib"] for r in rows], height=0.5,
                   color=[COLORS.get(r["family"], "#333") for r in rows], label="PSS")
    ax.bar_label(bars, labels=[f"PSS {r['pss_mib']:,.0f} (RSS {r['rss_mib']:,.0f})" for r in rows],
                 padding=3, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("MiB, whole process tree (lower is better)")
    ax.set_title("Flask + Django + FastAPI in one config")
    ax.margins(x=0.25)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "three_apps.png", dpi=110)
    plt.close(fig)


def main():
    results = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    bar_at(results, out, "rps", "requests/s", "hello_64.png",
           f"Hello world: requests/s at {TARGET_CONNS} connections")
    scaling(results, out)
    cpu_bound(results, out)
    three_apps(results, out)
    bar_at(results, out, "cpu_us_per_req", "server CPU µs per request (lower is better)",
           "cpu_per_request.png", f"Hello world: server CPU per request at {TARGET_CONNS} connections")


if __name__ == "__main__":
    main()
