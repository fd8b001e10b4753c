"""The settings of one benchmark run, made by run.py from its command line
and handed to everything that starts or measures a server."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from plan import Endpoint


@dataclass
class Config:
    caddy: Path  # the binary under test
    python: str  # the Python it embeds; the venvs are made with it
    out: Path  # results.json, README.md, charts
    duration: int  # seconds measured per point
    warmup: int  # seconds of load before each, not counted
    conns: set[int] | None  # connection counts to keep; None: all
    venvs: dict[str, Path] = field(default_factory=dict)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    lib_path: Path | None = None  # LD_LIBRARY_PATH of the servers: the private libpython
    tls: tuple[Path, Path] | None = None  # certificate and key of the HTTP/2 points
    running: list = field(default_factory=list)  # servers started and not yet stopped

    @property
    def raw(self) -> Path:
        """Server logs and generated configs; git-ignored."""
        return self.out / "raw"
