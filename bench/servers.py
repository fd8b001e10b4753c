"""How each server under test is started, checked and stopped: Caddy (ours,
the wheel's or caddy-snake's) with a generated Caddyfile, and the peers it
proxies to or that listen themselves, each in its own process group."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from config import Config
from environment import caddysnake_binary, log
from memory import evict_from_page_cache, process_tree
from plan import APPS, PORT, ROOT, UPSTREAM_PORTS, Endpoint, ServerSpec


def port_free(port: int) -> bool:
    """Whether a server could listen on the port now (SO_REUSEADDR, as servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_port_free(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not port_free(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {port} is still taken after {timeout:.0f} s; "
                               f"another program uses it (ss -ltnp 'sport = :{port}')")
        time.sleep(0.2)


def fetch(url: str, upload: int = 0, timeout: float = 10) -> tuple[int, bytes]:
    data = b"x" * upload if upload else None
    req = urllib.request.Request(url, data=data, method="POST" if upload else "GET")
    if upload:
        req.add_header("Content-Type", "application/octet-stream")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def fetch_h2(url: str, timeout: float = 10) -> tuple[int, bytes]:
    """GET over TLS and HTTP/2 with curl (urllib speaks HTTP/1.1 only, which
    Granian's `--http 2` refuses); -k: the points' certificate is self-signed."""
    with tempfile.NamedTemporaryFile(prefix="bench-h2-body-") as body:
        out = subprocess.run(["curl", "-sk", "--http2", "--max-time", str(timeout), "-o", body.name,
                              "-w", "%{http_code} %{http_version}", url], capture_output=True, text=True)
        if out.returncode != 0:
            raise OSError(f"curl exited with {out.returncode}: {out.stderr.strip()}")
        status, version = out.stdout.split()
        if version != "2":
            raise ValueError(f"answered in HTTP/{version}, not HTTP/2")
        return int(status), Path(body.name).read_bytes()


def check_answer(url: str, ep: Endpoint) -> tuple[str | None, bool]:
    """(None, _) when the endpoint answers as it must; otherwise (what is
    wrong, whether it may be a server still starting)."""
    try:
        status, body = fetch_h2(url + ep.path) if url.startswith("https:") else fetch(url + ep.path, ep.upload)
    except (OSError, urllib.error.URLError) as err:
        return f"no answer: {err}", True
    except ValueError as err:
        return str(err), False
    if status != 200:
        # 502/503: Caddy is up, what it proxies to is not yet.
        return f"status {status}: {body[:200]!r}", status in (502, 503)
    if ep.expect is not None and body != ep.expect:
        return f"wrong body {body[:200]!r}, want {ep.expect[:200]!r}", False
    if ep.expect_len is not None and len(body) != ep.expect_len:
        return f"body of {len(body)} bytes, want {ep.expect_len}", False
    return None, False


class Server:
    """A running ServerSpec: Caddy and/or its peers, each in its own process group."""

    def __init__(self, spec: ServerSpec, cfg: Config, tag: str = ""):
        self.spec = spec
        self.cfg = cfg
        self.tag = tag or spec.name
        self.procs: list[subprocess.Popen] = []
        self.url = f"{'https' if spec.tls else 'http'}://127.0.0.1:{PORT}"

    def fill(self, text: str) -> str:
        """The spec's placeholders replaced (see ServerSpec)."""
        cert, key = self.cfg.tls or ("", "")
        values = {"apps": APPS, "port": PORT, "cert": cert, "key": key,
                  "venv": self.cfg.venvs.get(self.spec.venv, "") if self.spec.venv else "",
                  **{f"upstream{i + 1 if i else ''}": p for i, p in enumerate(UPSTREAM_PORTS)}}

        def one(m: re.Match) -> str:
            name, _, venv = m.group(1).partition(":")
            return str(self.cfg.venvs[venv]) if name == "venv" and venv else str(values[name])
        return re.sub(r"\{(apps|port|cert|key|venv(?::[\w-]+)?|upstream\d?)\}", one, text)

    def _spawn(self, argv: list[str], what: str, cwd: Path) -> None:
        raw = self.cfg.raw
        logfile = open(raw / f"{self.tag}.{what}.log", "wb")
        env = dict(os.environ, XDG_DATA_HOME=str(raw / "xdg"), XDG_CONFIG_HOME=str(raw / "xdg"),
                   PYTHONDONTWRITEBYTECODE="1")
        if self.cfg.lib_path:
            env["LD_LIBRARY_PATH"] = str(self.cfg.lib_path)
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=logfile,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        logfile.close()
        self.procs.append(proc)
        if self not in self.cfg.running:
            self.cfg.running.append(self)

    def caddyfile(self) -> Path:
        site = self.fill(self.spec.caddy_site)
        if self.spec.tls:
            address = f"https://127.0.0.1:{PORT}"
            site = self.fill("tls {cert} {key}") + "\n\t" + site
        else:
            address = f"http://127.0.0.1:{PORT}"
        text = ("{\n\tadmin off\n\tpersist_config off\n\tauto_https off\n}\n\n"
                f"{address} {{\n\t{site}\n}}\n")
        path = self.cfg.raw / f"{self.tag}.Caddyfile"
        path.write_text(text)
        return path

    def caddy_command(self) -> Path:
        """The Caddy binary of the spec's host, evicted from the page cache (see
        evict_from_page_cache) so that every server maps its binary alike."""
        venvs = self.cfg.venvs
        if self.spec.host == "wheel":
            for module in (venvs["wheel"] / "lib").glob("python*/site-packages/vivarium/_caddy*.so"):
                evict_from_page_cache(module)
            return venvs["wheel"] / "bin" / "vivarium"
        command = caddysnake_binary(venvs["caddysnake"]) if self.spec.host == "caddysnake" else self.cfg.caddy
        evict_from_page_cache(command)
        return command

    def ports(self) -> list[int]:
        return [PORT] + (list(UPSTREAM_PORTS) if self.spec.peers and self.spec.caddy_site else [])

    def start(self, endpoints: list[Endpoint], timeout: float = 90, prefixes=("",)) -> None:
        """Starts the processes and waits until every endpoint answers
        correctly, under each of the URL prefixes."""
        for port in self.ports():
            wait_port_free(port)
        for i, peer in enumerate(self.spec.peers):
            self._spawn([self.fill(a) for a in peer], f"peer{i + 1}", APPS)
        if self.spec.caddy_site:
            self._spawn([str(self.caddy_command()), "run", "--adapter", "caddyfile",
                         "--config", str(self.caddyfile())], "caddy", ROOT)
        deadline = time.monotonic() + timeout
        pending = [(prefix, ep) for prefix in prefixes for ep in endpoints]
        while pending:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{self.tag}: {proc.args[0]} exited with {proc.returncode}\n"
                                       + self.log_tail())
            prefix, ep = pending[0]
            problem, starting = check_answer(self.url + prefix, ep)
            if problem is None:
                pending.pop(0)
                continue
            if not starting or time.monotonic() > deadline:
                raise RuntimeError(f"{self.tag}: {prefix}{ep.path} does not answer correctly: "
                                   f"{problem}\n" + self.log_tail())
            time.sleep(0.3)

    def pids(self) -> list[int]:
        return process_tree([p.pid for p in self.procs])

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for path in sorted(self.cfg.raw.glob(f"{self.tag}.*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {os.path.relpath(path)} (last {len(tail)} lines)\n" + "\n".join(tail))
        return "\n".join(out)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM to each process group we started, SIGKILL after timeout;
        then waits for the ports to be free."""
        for proc in reversed(self.procs):  # Caddy first, then what it proxied to
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.tag}: pid {proc.pid} ignored SIGTERM for {timeout:.0f} s; SIGKILL")
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
            # Workers left in the group (their parent gone) are ours too.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.procs = []
        if self in self.cfg.running:
            self.cfg.running.remove(self)
        for port in [PORT, *UPSTREAM_PORTS]:
            wait_port_free(port)


def stop_all(cfg: Config) -> None:
    for server in list(cfg.running):
        try:
            server.stop(timeout=10)
        except Exception as err:  # noqa: BLE001 - best effort while exiting
            log(f"stopping {server.tag}: {err}")
