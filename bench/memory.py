"""A serving process tree: its processes, their CPU time and their memory
(RSS, PSS, anonymous), read from /proc."""

from __future__ import annotations

import os
import resource
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def parents() -> dict[int, int]:
    """pid -> ppid of every process alive."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                out[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return out


def process_tree(roots: list[int]) -> list[int]:
    """The roots and all their descendants that are alive."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents().items():
        children.setdefault(ppid, []).append(pid)
    seen, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        if pid in seen or not Path(f"/proc/{pid}").exists():
            continue
        seen.append(pid)
        todo.extend(children.get(pid, []))
    return seen


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (all their threads), in seconds."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        except (OSError, IndexError, ValueError):
            pass
    return ticks / CLK_TCK


def machine_busy_seconds() -> tuple[float, float]:
    """CPU seconds the whole machine has been busy (all cores) and stolen by
    the hypervisor, from /proc/stat."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = f[:8]
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


def children_cpu_seconds() -> float:
    """CPU of this script's reaped children: the load generator, around one run of it."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def memory_mib(pids: list[int]) -> tuple[float, float, float]:
    """Summed VmRSS, Pss and RssAnon of the processes, MiB. RSS counts pages
    that forked workers share once per worker; Pss splits them. RssAnon leaves
    out the mapped executable and libraries (see evict_from_page_cache)."""
    rss = pss = anon = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh)
            rss += int(fields["VmRSS"].split()[0])
            anon += int(fields["RssAnon"].split()[0])
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                pss += next(int(line.split()[1]) for line in fh if line.startswith("Pss:"))
        except (OSError, KeyError, StopIteration):
            pass
    return round(rss / 1024, 1), round(pss / 1024, 1), round(anon / 1024, 1)


def mapped_files(pid: int) -> set[str]:
    try:
        with open(f"/proc/{pid}/maps") as fh:
            return {fields[5] for fields in (line.split(None, 5) for line in fh) if len(fields) == 6}
    except OSError:
        return set()


def executables(pids: list[int]) -> set[str]:
    """The files the processes execute: their /proc/<pid>/exe, and libpython
    where it is a library of its own."""
    out = set()
    for pid in pids:
        try:
            out.add(os.path.realpath(f"/proc/{pid}/exe"))
        except OSError:
            pass
        out |= {path.strip() for path in mapped_files(pid) if "/libpython" in path}
    return out


def outside_mappers(pids: list[int]) -> dict[str, int]:
    """For each executable of the tree, how many processes outside it map the
    same file: each one would take a share of its pages out of the tree's PSS.
    Paths are relative to the checkout, so the report names no directory of
    the machine it ran on."""
    wanted = executables(pids)
    inside = set(pids)
    counts = dict.fromkeys(wanted, 0)
    for pid in parents():
        if pid in inside or pid == os.getpid():
            continue
        for path in wanted & {p.strip() for p in mapped_files(pid)}:
            counts[path] += 1
    return {shown(path): n for path, n in counts.items()}


def shown(path: str) -> str:
    root = str(Path(__file__).resolve().parent.parent) + os.sep
    return path[len(root):] if path.startswith(root) else path


def evict_from_page_cache(path: Path) -> None:
    """Drops a file's cached pages. How much of bin/caddy's 90 MiB counts in RSS
    depends on how the page cache holds it: freshly linked, the kernel kept it
    in 2 MiB folios and mapped nearly all its text and data, 16 MiB more RSS
    than after it was read back from disk. Evicted before each start, every
    server maps it alike. Pages a running process maps stay; none should then."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
