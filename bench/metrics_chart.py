"""One app's queue depth and busy threads while load rises and falls, from a real run of
bin/caddy sampled on its /metrics: writes docs/metrics/load.png and docs/metrics/load.json.

    make metrics-chart          (about a minute; builds bin/caddy first)

The app (bench/apps/waiting_app.py) runs in 2 interpreters x 4 threads. A client of
keep-alive connections, each one request after another, steps from 1 to 48 connections
and back, 4 s a step, while a sampler reads /metrics every 0.2 s. The client is Python
threads on the same machine: the chart shows what the server's gauges do, not its speed.
Only the standard library drives the run; the chart is drawn with matplotlib from the
venv of bench/requirements/charts.txt, where this script runs itself again.
"""

import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = ROOT / "docs" / "metrics"
STEPS = (1, 2, 4, 8, 16, 32, 48, 32, 16, 8, 4, 2, 1)  # client connections, in order
STEP_SECONDS = 4
SAMPLE_SECONDS = 0.2
INTERPRETERS, THREADS = 2, 4
APP_NAME = "waiting"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def caddyfile(http_port: int, admin_port: int) -> str:
    return f"""{{
	admin 127.0.0.1:{admin_port}
	auto_https off
	persist_config off
}}
http://127.0.0.1:{http_port} {{
	python {{
		module_wsgi waiting_app:app
		working_dir "{BENCH / 'apps'}"
		interpreters {INTERPRETERS}
		threads {THREADS}
		name {APP_NAME}
	}}
}}
"""


SAMPLE = re.compile(r'^(vivarium_[a-z_]+)\{([^}]*)\} (\S+)$')


def scrape(admin_port: int) -> dict[str, float]:
    """The app's gauges, each summed over its interpreters and thread states."""
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if not m or f'app="{APP_NAME}"' not in m.group(2):
            continue
        name = m.group(1)
        if name == "vivarium_threads":
            name += "_busy" if 'state="busy"' in m.group(2) else "_idle"
        if name == "vivarium_requests_total" and 'class="2xx"' not in m.group(2):
            continue
        out[name] = out.get(name, 0.0) + float(m.group(3))
    return out


class Client:
    """Threads that each keep one connection busy while their index is below the target."""

    def __init__(self, port: int, most: int):
        self.port, self.target, self.stop = port, 0, False
        self.cond = threading.Condition()
        self.failures = 0
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(most)]
        for t in self.threads:
            t.start()

    def set(self, n: int) -> None:
        with self.cond:
            self.target = n
            self.cond.notify_all()

    def run(self, index: int) -> None:
        conn = None
        while True:
            with self.cond:
                while index >= self.target and not self.stop:
                    if conn is not None:
                        conn.close()
                        conn = None
                    self.cond.wait()
                if self.stop:
                    return
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                conn.request("GET", "/")
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    self.failures += 1
            except OSError:
                self.failures += 1
                conn = None

    def close(self) -> None:
        with self.cond:
            self.stop = True
            self.cond.notify_all()
        for t in self.threads:
            t.join(30)


def serving(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def measure(caddy: Path) -> dict:
    http_port, admin_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "Caddyfile").write_text(caddyfile(http_port, admin_port))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(XDG_DATA_HOME=tmp, XDG_CONFIG_HOME=tmp)
        log = open(Path(tmp) / "caddy.log", "wb")
        server = subprocess.Popen([str(caddy), "run", "--config", "Caddyfile", "--adapter", "caddyfile"],
                                  cwd=tmp, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 60
            while not serving(http_port):
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit("bin/caddy did not start:\n" + (Path(tmp) / "caddy.log").read_text()[-3000:])
                time.sleep(0.2)
            client = Client(http_port, max(STEPS))
            samples = []
            began = time.monotonic()
            for step, conns in enumerate(STEPS):
                client.set(conns)
                step_end = began + (step + 1) * STEP_SECONDS
                while time.monotonic() < step_end:
                    sample = scrape(admin_port)
                    sample["t"] = time.monotonic() - began
                    sample["connections"] = conns
                    samples.append(sample)
                    time.sleep(SAMPLE_SECONDS)
            client.close()
        finally:
            server.terminate()
            server.wait(30)
            log.close()
    return {"steps": STEPS, "step_seconds": STEP_SECONDS, "interpreters": INTERPRETERS, "threads": THREADS,
            "failures": client.failures, "loadavg_after": os.getloadavg(), "cpus": os.cpu_count(),
            "samples": samples}


def draw(run: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = run["samples"]
    t = [x["t"] for x in s]
    rate = [0.0] + [
        (b["vivarium_requests_total"] - a["vivarium_requests_total"]) / (b["t"] - a["t"]) for a, b in zip(s, s[1:])
    ]
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(9, 7.5), sharex=True,
                                              gridspec_kw={"height_ratios": [2, 2, 1.3]})
    top.step(t, [x["connections"] for x in s], where="post", color="#7f7f7f", label="client connections")
    top.plot(t, [x["vivarium_requests_in_flight"] for x in s], color="#1f77b4", label="vivarium_requests_in_flight")
    top.plot(t, [x["vivarium_queue_depth"] for x in s], color="#d62728", label="vivarium_queue_depth")
    top.set_ylabel("requests")
    top.legend(loc="upper left", fontsize=8)
    middle.plot(t, [x["vivarium_threads_busy"] for x in s], color="#2ca02c",
                label='vivarium_threads{state="busy"} (both interpreters)')
    middle.plot(t, [x["vivarium_concurrency_limit"] for x in s], color="#ff7f0e", linestyle="--",
                label="vivarium_concurrency_limit (sum)")
    middle.axhline(run["interpreters"] * run["threads"], color="#bbbbbb", linewidth=0.8)
    middle.set_ylabel("threads")
    middle.set_ylim(0, run["interpreters"] * run["threads"] + 1)
    middle.legend(loc="upper left", fontsize=8)
    bottom.plot(t, rate, color="#9467bd", label="rate(vivarium_requests_total[0.2s]), 2xx")
    bottom.set_ylabel("req/s")
    bottom.set_xlabel("seconds")
    bottom.legend(loc="upper left", fontsize=8)
    fig.suptitle(f"One WSGI app, {run['interpreters']} interpreters x {run['threads']} threads, "
                 f"1 ms of Python + 4 ms waiting per request", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    venv = BENCH / ".venvs" / "charts"
    if Path(sys.prefix).resolve() != venv.resolve():
        sys.path.insert(0, str(BENCH))
        import run  # bench/run.py: its venvs, so the chart uses the same matplotlib

        venv = run.ensure_venv("charts", sys.executable)
        os.execv(str(venv / "bin" / "python"), [str(venv / "bin" / "python"), __file__, *sys.argv[1:]])
    caddy = Path(os.environ.get("VIVARIUM_BIN", ROOT / "bin" / "caddy"))
    result = measure(caddy)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "load.json").write_text(json.dumps(result, indent=1) + "\n")
    draw(result, OUT / "load.png")
    print(f"wrote {OUT / 'load.png'} and load.json ({len(result['samples'])} samples, "
          f"{result['failures']} failed requests)")


if __name__ == "__main__":
    main()
