"""plugin/bridge_bench_test.go: the bridge without HTTP, run by go test."""

from __future__ import annotations

import os
import re
import subprocess

from config import Config
from environment import command_output, log
from plan import ROOT


def cgo_env(python: str) -> dict:
    """The CGO flags `make` exports, or made the same way."""
    env = dict(os.environ)
    if "CGO_LDFLAGS" not in env:
        cfg = python + "-config"
        libdir = command_output([python, "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"])
        env.update(CGO_ENABLED="1", CGO_CFLAGS=command_output([cfg, "--includes"]) + " -O2 -g",
                   CGO_LDFLAGS=command_output([cfg, "--embed", "--ldflags"]) + f" -Wl,-rpath,{libdir}")
    return env


def run_go_bench(cfg: Config, benchtime: str) -> dict:
    """A no-op app through the scheduler and the C workers, no HTTP."""
    cmd = ["go", "test", "-bench", "Bridge", "-run", "^$", "-benchtime", benchtime, "-count", "1", "./plugin"]
    log("go " + " ".join(cmd[1:]))
    out = subprocess.run(cmd, cwd=ROOT, env=cgo_env(cfg.python), capture_output=True, text=True, timeout=600)
    (cfg.raw / "go-bench.txt").write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        raise RuntimeError("go test -bench Bridge failed:\n" + out.stdout[-3000:] + out.stderr[-3000:])
    results = {}
    for m in re.finditer(r"^(BenchmarkBridge\S+?)(?:-\d+)?\s+(\d+)\s+([\d.]+) ns/op(?:\s+([\d.]+) cpu-us/op)?"
                         r"(?:\s+(\d+) B/op\s+(\d+) allocs/op)?", out.stdout, re.M):
        results[m.group(1)] = {"iterations": int(m.group(2)), "ns_per_op": float(m.group(3)),
                               "cpu_us_per_op": float(m.group(4)) if m.group(4) else None,
                               "bytes_per_op": int(m.group(5) or 0), "allocs_per_op": int(m.group(6) or 0)}
        log(f"  {m.group(1)}: {float(m.group(3)):.0f} ns/op")
    return results
