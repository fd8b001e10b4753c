"""The hash cases of tests/test_hashes.py: every algorithm of CPython's built-in
hash modules (_md5, _sha1, _sha2, _sha3, _blake2) and of hashlib, on inputs
around their block sizes, fed whole and in uneven pieces, digested twice while
updating, copied and diverged, SHAKE at several lengths, BLAKE2 with every
parameter, and the errors of bad parameters.

`results()` maps a case's name to its hex digest (or the exception it raised).
The app runs it inside bin/caddy; the test runs this file with the system's
python3.X as the oracle (`python3.X hash_cases.py` prints the JSON).
"""

from __future__ import annotations

import hashlib
import json
import random
import sys

import _blake2
import _md5
import _sha1
import _sha2
import _sha3

SIZES = [0, 1, 63, 64, 65, 127, 128, 129, 1 << 20]
PIECES = [1, 7, 64, 3, 129, 1000, 127, 4096, 65, 10007]

FIXED = {
    "_md5.md5": _md5.md5,
    "_sha1.sha1": _sha1.sha1,
    "_sha2.sha224": _sha2.sha224,
    "_sha2.sha256": _sha2.sha256,
    "_sha2.sha384": _sha2.sha384,
    "_sha2.sha512": _sha2.sha512,
    "_sha3.sha3_224": _sha3.sha3_224,
    "_sha3.sha3_256": _sha3.sha3_256,
    "_sha3.sha3_384": _sha3.sha3_384,
    "_sha3.sha3_512": _sha3.sha3_512,
    "_blake2.blake2b": _blake2.blake2b,
    "_blake2.blake2s": _blake2.blake2s,
}
for _name in ["md5", "sha1", "sha224", "sha256", "sha384", "sha512", "sha3_224", "sha3_256", "sha3_384", "sha3_512", "blake2b", "blake2s"]:
    FIXED[f"hashlib.{_name}"] = getattr(hashlib, _name)
SHAKES = {
    "_sha3.shake_128": _sha3.shake_128,
    "_sha3.shake_256": _sha3.shake_256,
    "hashlib.shake_128": hashlib.shake_128,
    "hashlib.shake_256": hashlib.shake_256,
}
SHAKE_LENGTHS = [0, 1, 32, 1000]

BLAKE2 = {"blake2b": _blake2.blake2b, "blake2s": _blake2.blake2s}
BLAKE2_PARAMS = {
    "key": {"key": b"k"},
    "key-max": {"key": None},  # the variant's longest key, filled in below
    "salt": {"salt": b"salt"},
    "salt-max": {"salt": None},
    "person": {"person": b"me"},
    "person-max": {"person": None},
    "digest_size-1": {"digest_size": 1},
    "digest_size-20": {"digest_size": 20},
    "all": {"key": b"secret key", "salt": b"NaCl", "person": b"vivarium", "digest_size": 17},
    "tree-leaf": {"fanout": 2, "depth": 2, "leaf_size": 4096, "node_offset": 0, "node_depth": 0, "inner_size": 32},
    "tree-leaf-1": {"fanout": 2, "depth": 2, "leaf_size": 4096, "node_offset": 1, "node_depth": 0, "inner_size": 32, "last_node": True},
    "tree-root": {"fanout": 2, "depth": 2, "leaf_size": 4096, "node_offset": 0, "node_depth": 1, "inner_size": 32, "last_node": True},
    "tree-wide": {"fanout": 0, "depth": 255, "leaf_size": 2**32 - 1, "node_offset": 2**40 + 3, "node_depth": 255, "inner_size": 1},
    "last_node": {"last_node": True},
    "keyed-tree": {"key": b"k" * 8, "fanout": 3, "depth": 4, "node_offset": 5, "node_depth": 2, "inner_size": 16, "last_node": True},
}
BLAKE2_ERRORS = {
    "digest_size-0": {"digest_size": 0},
    "digest_size-too-big": {"digest_size": None},
    "key-too-long": {"key": None},
    "salt-too-long": {"salt": None},
    "person-too-long": {"person": None},
    "fanout-256": {"fanout": 256},
    "depth-0": {"depth": 0},
    "depth-256": {"depth": 256},
    "leaf_size-2**32": {"leaf_size": 2**32},
    "leaf_size-negative": {"leaf_size": -1},
    "node_offset-negative": {"node_offset": -1},
    "node_offset-2**48": {"node_offset": 2**48},
    "node_offset-2**64": {"node_offset": 2**64},
    "node_depth-256": {"node_depth": 256},
    "inner_size-too-big": {"inner_size": None},
}


def data(size: int, seed: int = 1) -> bytes:
    return random.Random(seed * 1_000_003 + size).randbytes(size)


def pieces(message: bytes):
    i = k = 0
    while i < len(message):
        step = PIECES[k % len(PIECES)]
        yield message[i : i + step]
        i += step
        k += 1


def fed(make, message: bytes, uneven: bool, **kwargs):
    h = make(**kwargs)
    for piece in pieces(message) if uneven else [message]:
        h.update(piece)
    return h


def error(make, **kwargs) -> str:
    try:
        make(**kwargs)
    except Exception as e:  # the type and message are what is compared
        return f"{type(e).__name__}: {e}"
    return "no error"


def fixed_cases(out: dict) -> None:
    for name, make in FIXED.items():
        h0 = make()
        out[f"{name} attrs"] = [h0.name, h0.digest_size, h0.block_size]
        for size in SIZES:
            message = data(size)
            whole = fed(make, message, False)
            uneven = fed(make, message, True)
            out[f"{name} {size} whole"] = whole.hexdigest()
            out[f"{name} {size} uneven"] = uneven.hexdigest()
            out[f"{name} {size} digest"] = uneven.digest().hex()
            out[f"{name} {size} constructor"] = make(message).hexdigest()
        # a digest does not end the state; a copy goes its own way
        h = make(data(100))
        first = h.hexdigest()
        twin = h.copy()
        h.update(data(200, 2))
        twin.update(data(31, 3))
        out[f"{name} continued"] = [first, h.hexdigest(), twin.hexdigest(), h.hexdigest()]
        sibling = twin.copy()
        sibling.update(b"")
        out[f"{name} copy of copy"] = [sibling.hexdigest(), twin.hexdigest()]


def shake_cases(out: dict) -> None:
    for name, make in SHAKES.items():
        h0 = make()
        out[f"{name} attrs"] = [h0.name, h0.digest_size, h0.block_size]
        for size in SIZES:
            message = data(size)
            for uneven in (False, True):
                h = fed(make, message, uneven)
                for length in SHAKE_LENGTHS:
                    out[f"{name} {size} {'uneven' if uneven else 'whole'} {length}"] = h.hexdigest(length)
                out[f"{name} {size} {'uneven' if uneven else 'whole'} digest 33"] = h.digest(33).hex()
        h = make(data(300))
        first = h.hexdigest(64)
        twin = h.copy()
        h.update(data(5, 2))
        twin.update(data(500, 3))
        out[f"{name} continued"] = [first, h.hexdigest(64), twin.hexdigest(64), h.hexdigest(16)]
        if name.startswith("_sha3"):  # hashlib's are OpenSSL's, which would try to allocate it
            out[f"{name} negative length"] = error(lambda: make(b"x").digest(-1))
            out[f"{name} huge length"] = error(lambda: make(b"x").digest(2**40))
    for name, module in (("_sha3", _sha3), ("hashlib", hashlib)):
        for algo in ("sha3_224", "sha3_256", "sha3_384", "sha3_512", "shake_128", "shake_256"):
            h = getattr(module, algo)()
            out[f"{name}.{algo} internals"] = [repr(getattr(h, a, None)) for a in ("_capacity_bits", "_rate_bits", "_suffix")]


def blake2_cases(out: dict) -> None:
    for variant, make in BLAKE2.items():
        limits = {"key": make.MAX_KEY_SIZE, "salt": make.SALT_SIZE, "person": make.PERSON_SIZE, "digest_size": make.MAX_DIGEST_SIZE, "inner_size": make.MAX_DIGEST_SIZE}
        out[f"{variant} limits"] = limits
        for label, params in BLAKE2_PARAMS.items():
            kwargs = {k: (b"\xa5" * limits[k] if v is None else v) for k, v in params.items()}
            if variant == "blake2s" and kwargs.get("node_offset", 0) >= 2**48:
                kwargs["node_offset"] = 2**47 + 3
            h0 = make(**kwargs)
            out[f"{variant} {label} attrs"] = [h0.name, h0.digest_size, h0.block_size]
            for size in SIZES:
                message = data(size, 4)
                out[f"{variant} {label} {size} whole"] = fed(make, message, False, **kwargs).hexdigest()
                out[f"{variant} {label} {size} uneven"] = fed(make, message, True, **kwargs).digest().hex()
            h = make(data(129), **kwargs)
            first = h.hexdigest()
            twin = h.copy()
            h.update(data(1, 2))
            twin.update(data(127, 3))
            out[f"{variant} {label} continued"] = [first, h.hexdigest(), twin.hexdigest()]
        for label, params in BLAKE2_ERRORS.items():
            kwargs = {k: (b"\xa5" * (limits[k] + 1) if v is None and k in ("key", "salt", "person") else v) for k, v in params.items()}
            kwargs = {k: (limits[k] + 1 if v is None else v) for k, v in kwargs.items()}
            out[f"{variant} error {label}"] = error(make, **kwargs)
            out[f"hashlib.{variant} error {label}"] = error(getattr(hashlib, variant), **kwargs)


def results() -> dict:
    out: dict = {}
    fixed_cases(out)
    shake_cases(out)
    blake2_cases(out)
    return out


def builtin_modules() -> dict:
    """Where each hash module comes from: "built-in" is libpython itself."""
    return {m.__name__: getattr(m.__spec__, "origin", None) for m in (_md5, _sha1, _sha2, _sha3, _blake2)}


if __name__ == "__main__":
    json.dump({"version": list(sys.version_info[:2]), "modules": builtin_modules(), "results": results()}, sys.stdout)
