"""First code run in every app interpreter.

Builds the interpreter's own sys.path from the app's working_dir and venv, sends
what the app prints to Caddy's log, imports the app and hands the matching
adapter's request handler back to the C runtime. Errors come back as one message
that names the app, what went wrong and the fix, because that message is what
Caddy shows when it refuses the config.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
import threading
import traceback
from typing import Any, Callable

import _vivarium

_shutdown_hooks: list[Callable[[], None]] = []


class AppError(Exception):
    """A start-up failure with a message meant for the person running Caddy."""


class LogStream(io.TextIOBase):
    """sys.stdout / sys.stderr: each complete line becomes one entry in Caddy's log.

    Partial lines are kept per thread so concurrent requests never splice their
    output together.
    """

    def __init__(self, kind: int, name: str) -> None:
        super().__init__()
        self._kind = kind
        self._name = name
        self._local = threading.local()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def errors(self) -> str:  # type: ignore[override]
        return "backslashreplace"

    @property
    def name(self) -> str:
        return self._name

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        pending = getattr(self._local, "pending", "") + s
        *lines, rest = pending.split("\n")
        for line in lines:
            _vivarium.log(self._kind, line)
        self._local.pending = rest
        return len(s)

    def flush(self) -> None:
        rest = getattr(self._local, "pending", "")
        if rest:
            self._local.pending = ""
            _vivarium.log(self._kind, rest)


def _python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _venv_version(venv: str) -> str | None:
    """The major.minor Python version a venv was made with, from its pyvenv.cfg."""
    with open(os.path.join(venv, "pyvenv.cfg"), encoding="utf-8") as f:
        for line in f:
            key, _, value = line.partition("=")
            if key.strip() in ("version_info", "version"):
                return ".".join(value.strip().split(".")[:2])
    return None


# Values of the isolation setting (VV_ISOLATION_* in runtime/vivarium.h).
INTERPRETER, SHARED, MAIN = 0, 1, 2


def _stdlib_path() -> list[str]:
    # The main interpreter was started isolated and without site, so its first
    # sys.path holds only the standard library: nothing of the process's
    # site-packages. An app in the main interpreter rewrites sys.path, so the
    # first value is kept on the bridge module, which lives as long as it.
    saved = getattr(_vivarium, "stdlib_path", None)
    if saved is None:
        saved = [p for p in sys.path if p]
        _vivarium.stdlib_path = saved
    return list(saved)


def _forget_app_modules() -> None:
    """Drops the modules an earlier instance of the app imported from its
    working_dir, so a reload in the main interpreter imports fresh code.

    Modules of the venv stay: many compiled ones (PyO3) load once per process.
    The list lives on the bridge module, which lives as long as the interpreter.
    """
    for name in getattr(_vivarium, "app_modules", ()):
        sys.modules.pop(name, None)
    _vivarium.app_modules = []


def _remember_app_modules(before: set[str], working_dir: str, venv: str) -> None:
    prefix = os.path.join(working_dir, "")
    venv_prefix = os.path.join(venv, "") if venv else None
    mine = []
    for name in set(sys.modules) - before:
        path = getattr(sys.modules[name], "__file__", None)
        if not path or path.startswith("<"):
            continue
        path = os.path.abspath(path)
        if path.startswith(prefix) and not (venv_prefix and path.startswith(venv_prefix)):
            mine.append(name)
    _vivarium.app_modules = mine


def _refuse_fork() -> None:
    """The main interpreter allows os.fork, which subinterpreters refuse. A
    fork without exec copies one thread of a multithreaded Go process: the
    child cannot run. Refuse it the same way here; subprocess (fork+exec in
    C) still works."""

    def refused(*args: object, **kwargs: object) -> int:
        raise RuntimeError("fork is not supported in an app served by Vivarium (use subprocess)")

    os.fork = refused
    if hasattr(os, "forkpty"):
        os.forkpty = refused


def _setup_path(working_dir: str, venv: str) -> None:
    sys.path[:] = ([working_dir] if working_dir else []) + _stdlib_path()
    if not venv:
        return
    if not os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
        raise AppError(
            f"venv {venv} is not a virtual environment (no pyvenv.cfg); "
            f"create it with: python{_python_version()} -m venv {venv}"
        )
    made_with = _venv_version(venv)
    if made_with != _python_version():
        raise AppError(
            f"venv {venv} was made with Python {made_with or 'unknown'}, but this Caddy "
            f"embeds Python {_python_version()}; recreate it with: "
            f"python{_python_version()} -m venv --clear {venv}"
        )
    site_packages = os.path.join(venv, "lib", f"python{_python_version()}", "site-packages")
    if not os.path.isdir(site_packages):
        raise AppError(f"venv {venv} has no {site_packages}; recreate the venv")
    import site

    # addsitedir, not a plain append, so .pth files (editable installs,
    # namespace packages) work as they do under the venv's own python.
    site.addsitedir(site_packages)
    sys.prefix = sys.exec_prefix = venv
    python = os.path.join(venv, "bin", "python")
    if os.path.exists(python):
        sys.executable = python


def _refused_extension(exc: BaseException) -> tuple[str, str] | None:
    """(module, why) when an extension module refused this interpreter, else None."""
    for e in _chain(exc):
        if not isinstance(e, ImportError):
            continue
        text = str(e)
        if "does not support loading in subinterpreters" in text:
            return e.name or text.split("module ", 1)[-1].split(" ", 1)[0], "subinterpreters"
        if "PyO3 modules" in text and "subinterpreters" in text:
            return e.name or _innermost_module(e), "pyo3"
        # numpy's and Cython's words for the same limit as PyO3's.
        if "more than once per process" in text or "only be loaded into one interpreter per process" in text:
            return e.name or _innermost_module(e), "once"
    return None


def _innermost_module(exc: BaseException) -> str:
    """The module whose import raised exc, from the deepest frame of its traceback."""
    tb = exc.__traceback__
    name = "?"
    while tb is not None:
        name = tb.tb_frame.f_globals.get("__name__", name)
        tb = tb.tb_next
    return name


def _chain(exc: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _refusal_message(module_name: str, refused: tuple[str, str]) -> str:
    extension, why = refused
    if why in ("pyo3", "once"):
        built = "is built with PyO3, which loads" if why == "pyo3" else "loads"
        return (
            f"importing '{module_name}' failed: extension module '{extension}' {built} "
            "in only one interpreter per process, and another interpreter of this "
            "process has loaded it already: another app's, or this app's own instance that a "
            "reload is replacing (in a new interpreter it cannot load again). Give the app that "
            "needs it `isolation main`, which reloads in place, and run further such apps in "
            "separate Caddy processes."
        )
    return (
        f"importing '{module_name}' failed: extension module '{extension}' does not support "
        "own-GIL subinterpreters, so this app cannot have an interpreter of its own. "
        "Use `isolation main` (the main interpreter; one app per process) or `isolation shared` "
        "(a subinterpreter sharing the main GIL; modules such as pydantic_core, numpy and "
        "Cython-built ones load in only one interpreter per process, and a reload needs a new "
        "one, so for them use main). `caddy python-check` tells which applies."
    )


def _import_app(spec: str, working_dir: str, venv: str, default_attr: str) -> Any:
    module_name, _, attr = spec.partition(":")
    attr = attr or default_attr
    if not module_name:
        raise AppError(f'module spec "{spec}" names no module; write it as "package.module:{default_attr}"')
    where = f"working_dir {working_dir or '(none)'}" + (f" or venv {venv}" if venv else "")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise AppError(
                f"cannot find module '{module_name}' in {where} ({e}); check the module name and working_dir"
            ) from None
        raise AppError(
            f"importing '{module_name}' failed: {e}; is '{e.name}' installed in "
            f"{'venv ' + venv if venv else 'a venv (set venv)'}?\n{traceback.format_exc()}"
        ) from None
    except BaseException as e:
        refused = _refused_extension(e)
        if refused:
            raise AppError(_refusal_message(module_name, refused)) from None
        raise AppError(f"importing '{module_name}' raised an exception:\n{traceback.format_exc()}") from None

    obj: Any = module
    path = attr
    call = path.endswith("()")
    if call:
        path = path[:-2]
    for part in path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppError(f"module '{module_name}' has no attribute '{path}'; check the name after ':' in \"{spec}\"") from None
    if call:
        try:
            obj = obj()
        except BaseException:
            raise AppError(f"calling the factory '{spec}' raised an exception:\n{traceback.format_exc()}") from None
    if not callable(obj):
        raise AppError(f"'{spec}' is a {type(obj).__name__}, not a callable app")
    return obj


def _check(cfg: dict[str, Any]) -> str:
    """For `caddy python-check`: imports the app and reports, as JSON, whether
    it loaded and which extension modules outside the standard library it loaded."""
    from importlib.machinery import ExtensionFileLoader

    before = set(sys.modules)
    report: dict[str, Any] = {"ok": True, "error": None, "refused": None, "extensions": []}
    try:
        _setup_path(cfg["working_dir"], cfg["venv"])
        try:
            _import_app(cfg["module"], cfg["working_dir"], cfg["venv"], "app")
        except AppError as e:
            report.update(ok=False, error=str(e))
            refused = _refused_extension(e.__context__) if e.__context__ else None
            report["refused"] = refused[0] if refused else None
    except AppError as e:
        report.update(ok=False, error=str(e))
    stdlib = tuple(os.path.join(p, "") for p in _stdlib_path())
    for name in sorted(set(sys.modules) - before):
        module = sys.modules[name]
        path = getattr(module, "__file__", None) or ""
        if isinstance(getattr(module, "__loader__", None), ExtensionFileLoader) and not path.startswith(stdlib):
            report["extensions"].append({"name": name, "file": path})
    return json.dumps(report)


def _probe(cfg: dict[str, Any]) -> str:
    """For `caddy python-check`: loads each extension module file on its own,
    without its package, and reports which load in this interpreter."""
    import importlib.util

    _setup_path(cfg["working_dir"], cfg["venv"])
    results = []
    for ext in json.loads(cfg["module"]):
        try:
            spec = importlib.util.spec_from_file_location(ext["name"], ext["file"])
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            results.append({"name": ext["name"], "ok": True, "error": None})
        except BaseException as e:
            results.append({"name": ext["name"], "ok": False, "error": f"{type(e).__name__}: {e}"})
    return json.dumps(results)


def boot(cfg: dict[str, Any]) -> tuple[str | None, Any, Any]:
    """Called by the runtime: (error message, None, None) or (None, handler, base environ).

    The kinds "check" and "probe" answer a JSON report in place of a handler.
    """
    sys.stdout = LogStream(_vivarium.STDOUT, "<stdout>")
    sys.stderr = LogStream(_vivarium.STDERR, "<stderr>")
    if cfg["kind"] == "check":
        return None, _check(cfg), None
    if cfg["kind"] == "probe":
        return None, _probe(cfg), None
    try:
        isolation = int(cfg["isolation"])
        if isolation == MAIN:
            _forget_app_modules()
            _refuse_fork()
        _setup_path(cfg["working_dir"], cfg["venv"])
        adapter = importlib.import_module(f"vivarium_{cfg['kind']}")
        before = set(sys.modules)
        try:
            app = _import_app(cfg["module"], cfg["working_dir"], cfg["venv"], adapter.DEFAULT_ATTR)
        finally:
            if isolation == MAIN:
                _remember_app_modules(before, cfg["working_dir"], cfg["venv"])
        handler, base = adapter.make_handler(app, json.loads(cfg["options"]), _shutdown_hooks)
    except AppError as e:
        return str(e), None, None
    except BaseException:
        return f"app failed to start:\n{traceback.format_exc()}", None, None
    return None, handler, base


# How long threads the app started may take to finish when its interpreter ends.
THREAD_GRACE_SECONDS = 5.0


def shutdown() -> bool:
    """Called by the runtime before the interpreter ends. False means: do not end it.

    Ending an interpreter joins every non-daemon thread the app started; one
    that never returns would hang the thread that creates and ends every
    interpreter of the process. Such an interpreter is left alive instead.
    """
    for hook in reversed(_shutdown_hooks):
        try:
            hook()
        except BaseException:
            _vivarium.log(_vivarium.ERROR, f"shutdown hook failed:\n{traceback.format_exc()}")
    sys.stdout.flush()
    sys.stderr.flush()
    import time

    deadline = time.monotonic() + THREAD_GRACE_SECONDS
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is current or thread.daemon:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threading.enumerate() if t is not current and not t.daemon and t.is_alive()]
    if stuck:
        _vivarium.log(
            _vivarium.ERROR,
            f"threads {', '.join(stuck)} still run {THREAD_GRACE_SECONDS:g} s after the app was stopped; "
            "its interpreter is left alive, since ending it would wait for them forever; "
            "threads an app starts must end when it stops",
        )
        return False
    return True
