"""Save to served: how long after a saved edit the demo's app answers with the new code
(`watch`), idle and under a steady load, and how many requests of that load fail.

Runs the demo (examples/Caddyfile) from a copy of examples/ in a temporary directory,
with `watch` added to every `python` block, and the demo's venvs (scripts/demo.sh
setup makes them). For each app measured (--apps), it saves an edit of the app's
source --saves times with no load, then --saves times while --conns keep-alive
connections request the same app back to back. A save rewrites the file as an editor
does; the time is from the write to the first answer with the new code, polled every
5 ms on a connection of its own. Between saves it waits for the old instance to end.

Failures are any answer but 200 and any connection error, counted over the whole
loaded phase. The other apps' instances (GET /python/apps on the admin endpoint) are
compared before and after: watch must not touch them.

    make bench-watch                      (or: python3.14 bench/watch.py --help)

Standard library only. Writes docs/benchmarks/watch.md and watch.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@dataclass(frozen=True)
class Edited:
    """An app of the demo and the edit a save makes to it."""

    block: str  # the module line of its python block in examples/Caddyfile
    source: str  # the file edited, under examples/
    path: str  # what the load and the poll request
    anchor: str  # the text the first save replaces
    line: str  # what save n writes in its place ({n})
    answer: str  # what the new code's answer contains ({n})
    kind: str


APPS = {
    "flask": Edited('module_wsgi "app:app"', "flask/app.py", "/flask/api/hello",
                    'message=f"Hello, {name}!"', 'message=f"Hello {n}, {{name}}!"', "Hello {n}, world!",
                    "WSGI, 2 interpreters x 4 threads"),
    "starlette": Edited('module_asgi "app:app"', "starlette/app.py", "/starlette/info",
                        '"path": request.url.path,', '"path": request.url.path, "save": {n},', '"save":{n}',
                        "ASGI, 2 interpreters"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg: str) -> None:
    print(f"bench-watch: {msg}", file=sys.stderr, flush=True)


# -- the demo -------------------------------------------------------------------------


class Demo:
    """bin/caddy serving a copy of examples/, each python block with `watch`."""

    def __init__(self, caddy: Path, workdir: Path):
        self.caddy, self.workdir = caddy, workdir
        self.port, self.admin = free_port(), free_port()
        self.examples = workdir / "examples"
        self.logfile = workdir / "caddy.log"
        self.proc: subprocess.Popen | None = None

    def prepare(self) -> None:
        shutil.copytree(EXAMPLES, self.examples, symlinks=True,
                        ignore=shutil.ignore_patterns(".venv", "__pycache__"))
        for app in ("flask", "django", "starlette", "fastapi"):
            venv = EXAMPLES / app / ".venv"
            if not (venv / "pyvenv.cfg").exists():
                sys.exit(f"bench-watch: {venv} is missing: run scripts/demo.sh setup first")
            (self.examples / app / ".venv").symlink_to(venv)
        caddyfile = (EXAMPLES / "Caddyfile").read_text()
        lines = []
        for line in caddyfile.splitlines():
            lines.append(line)
            if line.strip().startswith(("module_wsgi", "module_asgi")):
                lines.append(line[: len(line) - len(line.lstrip())] + "watch")
        (self.workdir / "Caddyfile").write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 120) -> None:
        env = dict(os.environ, VIVARIUM_PORT=str(self.port), VIVARIUM_ADMIN_PORT=str(self.admin),
                   DJANGO_SQLITE_PATH=str(self.examples / "django" / "db.sqlite3"))
        with open(self.logfile, "wb") as out:
            self.proc = subprocess.Popen([str(self.caddy), "run", "--adapter", "caddyfile", "--config", "Caddyfile"],
                                         cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        for app in APPS.values():
            while True:
                if self.proc.poll() is not None:
                    sys.exit(f"bench-watch: caddy exited with {self.proc.returncode}\n{self.log_tail()}")
                try:
                    if get(self.port, app.path)[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    sys.exit(f"bench-watch: {app.path} does not answer\n{self.log_tail()}")
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-n:])

    def log_entries(self, msg: str) -> list[dict]:
        out = []
        for line in self.logfile.read_text(errors="replace").splitlines():
            if msg in line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def apps(self) -> dict[str, dict]:
        status, body = get(self.admin, "/python/apps", host="localhost")
        assert status == 200, body
        return {a["name"]: a for a in json.loads(body)["apps"]}

    def instances(self) -> dict[str, list[int]]:
        return {name: sorted(i["instance"] for i in a["instances"]) for name, a in self.apps().items()}

    def app_of(self, edited: Edited) -> str:
        for name, a in self.apps().items():
            if a["working_dir"].rstrip("/").endswith("/" + edited.source.split("/")[0]):
                return name
        raise LookupError(edited.source)


def get(port: int, path: str, host: str = "localhost", timeout: float = 10) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": f"{host}:{port}"})
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        conn.close()


# -- steady load ----------------------------------------------------------------------


def load_process(port: int, path: str, threads: int, stop, results) -> None:
    """threads keep-alive connections, each requesting path back to back until stop
    is set; puts (answers, failures, examples of failures) on results."""
    lock = threading.Lock()
    total = {"ok": 0, "failed": 0, "examples": []}

    def client():
        ok = failed = 0
        examples = []
        conn = None
        while not stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", path, headers={"Host": f"localhost:{port}"})
                r = conn.getresponse()
                body = r.read()
                if r.status == 200:
                    ok += 1
                else:
                    failed += 1
                    examples.append(f"{r.status} {body[:200]!r}")
                if r.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as err:
                failed += 1
                examples.append(repr(err))
                if conn is not None:
                    conn.close()
                conn = None
        with lock:
            total["ok"] += ok
            total["failed"] += failed
            total["examples"] += examples[:5]

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    results.put(total)


class Load:
    def __init__(self, port: int, path: str, conns: int, processes: int):
        ctx = multiprocessing.get_context("spawn")
        self.stop, self.results = ctx.Event(), ctx.Queue()
        per = [conns // processes + (1 if i < conns % processes else 0) for i in range(processes)]
        self.procs = [ctx.Process(target=load_process, args=(port, path, n, self.stop, self.results))
                      for n in per if n]
        self.ok = self.failed = 0
        self.examples: list[str] = []
        self.seconds = 0.0

    def __enter__(self):
        self.began = time.monotonic()
        for p in self.procs:
            p.start()
        time.sleep(1)  # every connection is open and busy before the first save
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for _ in self.procs:
            r = self.results.get(timeout=120)
            self.ok += r["ok"]
            self.failed += r["failed"]
            self.examples += r["examples"]
        for p in self.procs:
            p.join(30)
        self.seconds = time.monotonic() - self.began


# -- what else ran --------------------------------------------------------------------


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of root and its descendants, as /proc has them now."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += (int(stats[pid][11]) + int(stats[pid][12])) / tick
        todo += children.get(pid, [])
    return total


def machine_busy_seconds() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def our_cpu_seconds() -> float:
    """This script's, Caddy's (a child of it) and the clients', those that ended too."""
    return tree_cpu_seconds(os.getpid()) + sum(os.times()[2:4])


class Others:
    """Cores that programs other than this run (Caddy, the clients, this script) used
    meanwhile, on average: the machine is shared."""

    def __enter__(self):
        self.t0, self.busy0, self.ours0 = time.monotonic(), machine_busy_seconds(), our_cpu_seconds()
        return self

    def __exit__(self, *exc):
        busy, ours = machine_busy_seconds() - self.busy0, our_cpu_seconds() - self.ours0
        self.cores = max(0.0, busy - ours) / (time.monotonic() - self.t0)


# -- saves ----------------------------------------------------------------------------


class Saver:
    def __init__(self, demo: Demo, edited: Edited):
        self.demo, self.edited = demo, edited
        self.file = demo.examples / edited.source
        self.current = edited.anchor
        self.n = 0
        self.name = demo.app_of(edited)

    def save(self) -> dict:
        """One save; the seconds to the new code's first answer, and the restart's own
        account of its start (from Caddy's log)."""
        self.n += 1
        n, e = self.n, self.edited
        new = e.line.format(n=n)
        text = self.file.read_text()
        assert self.current in text, (self.current, self.file)
        restarts = len(self.demo.log_entries('"app restarted"'))
        want = e.answer.format(n=n)
        # As an editor saves: the whole file rewritten in place.
        self.file.write_text(text.replace(self.current, new))
        saved = time.monotonic()
        self.current = new
        conn = http.client.HTTPConnection("127.0.0.1", self.demo.port, timeout=30)
        polls = 0
        try:
            while True:
                conn.request("GET", e.path, headers={"Host": f"localhost:{self.demo.port}"})
                r = conn.getresponse()
                body = r.read().decode(errors="replace")
                polls += 1
                if r.status == 200 and want in body:
                    took = time.monotonic() - saved
                    break
                if time.monotonic() - saved > 60:
                    sys.exit(f"bench-watch: save {n} not served after 60 s\n{self.demo.log_tail()}")
                time.sleep(0.005)
        finally:
            conn.close()
        # The old instance ends before the next save, so that saves do not overlap.
        deadline = time.monotonic() + 60
        while len(self.demo.apps()[self.name]["instances"]) != 1 or \
                len(self.demo.log_entries('"app restarted"')) <= restarts:
            if time.monotonic() > deadline:
                sys.exit(f"bench-watch: the old instance of {self.name} did not end\n{self.demo.log_tail()}")
            time.sleep(0.05)
        entry = [x for x in self.demo.log_entries('"app restarted"') if x.get("app") == self.name][-1:]
        start = entry[0].get("start_seconds") if entry else None
        drain = entry[0].get("drain_seconds") if entry else None
        return {"served": took, "start": start, "drain": drain}


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "max": max(values), "min": min(values), "n": len(values)}


def measure(demo: Demo, edited: Edited, saves: int, conns: int, processes: int, pause: float) -> dict:
    saver = Saver(demo, edited)
    before = demo.instances()
    idle = []
    caddy_cpu = tree_cpu_seconds(demo.proc.pid)
    with Others() as idle_others:
        for _ in range(saves):
            idle.append(saver.save())
            time.sleep(pause)
    caddy_cpu = (tree_cpu_seconds(demo.proc.pid) - caddy_cpu) / saves
    with Others() as loaded_others:
        with Load(demo.port, edited.path, conns, processes) as load:
            loaded = []
            for _ in range(saves):
                loaded.append(saver.save())
                time.sleep(pause)
    after = demo.instances()
    others_touched = {name: (before[name], after.get(name)) for name in before
                      if name != saver.name and before[name] != after.get(name)}
    result = {
        "app": saver.name,
        "kind": edited.kind,
        "idle": idle,
        "loaded": loaded,
        "idle_served": summary([s["served"] for s in idle]),
        "loaded_served": summary([s["served"] for s in loaded]),
        "idle_start": summary([s["start"] for s in idle if s["start"] is not None] or [0]),
        "loaded_start": summary([s["start"] for s in loaded if s["start"] is not None] or [0]),
        "load": {"connections": conns, "processes": processes, "requests": load.ok + load.failed,
                 "failed": load.failed, "seconds": load.seconds, "examples": load.examples[:10]},
        "other_apps_touched": others_touched,
        "idle_caddy_cpu_per_save": caddy_cpu,
        "idle_others_cores": idle_others.cores,
        "loaded_others_cores": loaded_others.cores,
    }
    log(f"{saver.name}: idle median {result['idle_served']['median']:.3f} s max {result['idle_served']['max']:.3f} s; "
        f"loaded median {result['loaded_served']['median']:.3f} s max {result['loaded_served']['max']:.3f} s; "
        f"{load.ok + load.failed} requests under load, {load.failed} failed; other apps touched: {others_touched or 'none'}")
    return result


# -- report ---------------------------------------------------------------------------


def python_version(caddy: Path) -> str:
    out = subprocess.run([str(caddy), "version"], capture_output=True, text=True).stdout.strip()
    return out


def markdown(results: dict) -> str:
    m = results["machine"]
    rows = []
    for r in results["apps"]:
        for phase in ("idle", "loaded"):
            s, st = r[f"{phase}_served"], r[f"{phase}_start"]
            load = r["load"]
            rows.append(
                f"| {r['app'].rsplit('-', 1)[-1]} ({r['kind']}) | {'steady load, ' + str(load['connections']) + ' connections' if phase == 'loaded' else 'idle'} "
                f"| {s['n']} | {s['median']:.3f} | {s['max']:.3f} | {st['median']:.3f} | {st['max']:.3f} "
                f"| {str(load['requests']) + ' / ' + str(load['failed']) if phase == 'loaded' else ''} "
                f"| {r[phase + '_others_cores']:.2f} |")
    lines = [
        "# Save to served with `watch`",
        "",
        f"Measured by `make bench-watch` (`bench/watch.py`) on {results['date']}: {m['cpus']} CPUs, "
        f"load average {m['loadavg_before']} before the run, Python {results['python']}.",
        "",
        "The demo (examples/Caddyfile) with `watch` in every `python` block. A save rewrites the app's",
        "source with a new answer; *served* is the time from the write to the first answer with the",
        "new code (polled every 5 ms), *start* is the restart's own time to start the new",
        "interpreters (from Caddy's `app restarted` log line; the rest is the debounce and the",
        "switch). Under load, the connections request the edited app back to back on kept-alive",
        "connections; *failed* counts answers other than 200 and connection errors over the whole",
        "loaded phase. *Others* is the CPU that programs other than Caddy, the clients and this",
        "script used meanwhile, in cores on average: the machine is shared, and a restart's",
        "imports wait for a CPU like everything else.",
        "",
        "| App | Phase | Saves | Served median (s) | Served max (s) | Start median (s) | Start max (s) | Requests / failed | Others (cores) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
    ]
    for r in results["apps"]:
        lines.append(f"- {r['app'].rsplit('-', 1)[-1]}: Caddy used {r['idle_caddy_cpu_per_save']:.2f} s of CPU per idle save (the restart, "
                     "its polls and the old instance's end), whatever else ran: the part no parallel start removes.")
    for r in results["apps"]:
        touched = r["other_apps_touched"]
        lines.append(f"- {r['app'].rsplit('-', 1)[-1]}: other apps' instances {'changed: ' + json.dumps(touched) if touched else 'unchanged'}; "
                     f"{r['load']['requests']} requests in {r['load']['seconds']:.1f} s under load.")
    lines += ["", "Raw numbers: [watch.json](watch.json).", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--caddy", type=Path, default=Path(os.environ.get("VIVARIUM_BIN", ROOT / "bin" / "caddy")))
    ap.add_argument("--apps", default="flask,starlette", help="of: " + ", ".join(APPS))
    ap.add_argument("--saves", type=int, default=10, help="saves per phase (idle, loaded)")
    ap.add_argument("--conns", type=int, default=8, help="connections of the steady load")
    ap.add_argument("--processes", type=int, default=2, help="client processes the connections are spread over")
    ap.add_argument("--pause", type=float, default=0.3, help="seconds between a save's end and the next save")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = ap.parse_args()
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": platform.python_version(),
        "caddy": python_version(args.caddy),
        "machine": {"cpus": os.cpu_count(), "loadavg_before": " ".join(f"{x:.2f}" for x in os.getloadavg())},
        "settings": {"saves": args.saves, "conns": args.conns, "processes": args.processes, "pause": args.pause},
        "apps": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp:
        demo = Demo(args.caddy, Path(tmp))
        demo.prepare()
        try:
            demo.start()
            for name in args.apps.split(","):
                results["apps"].append(measure(demo, APPS[name], args.saves, args.conns, args.processes, args.pause))
        finally:
            demo.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "watch.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "watch.md").write_text(markdown(results))
    log(f"wrote {args.out / 'watch.md'}")
    failed = sum(r["load"]["failed"] for r in results["apps"])
    touched = any(r["other_apps_touched"] for r in results["apps"])
    return 1 if failed or touched else 0


if __name__ == "__main__":
    sys.exit(main())
