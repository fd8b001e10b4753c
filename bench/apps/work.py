"""Work shared by the benchmark apps, so every server runs the same code."""

import functools

HELLO = "Hello, world!"

# /cpu: about 5 ms of pure Python on a 2020s server core (bench/run.py measures
# and records the actual time on the machine it runs on).
CPU_LOOPS = 80_000


def burn(loops=CPU_LOOPS):
    """Pure-Python CPU work that holds the GIL all along; returns a checksum."""
    total = 0
    for i in range(loops):
        total = (total + i * i) % 1_000_003
    return total


@functools.cache
def download_body():
    """/download: 1 MiB, built on first use, once per process (or interpreter),
    so that it does not count in the idle memory of an interpreter."""
    return bytes(range(256)) * 4096
