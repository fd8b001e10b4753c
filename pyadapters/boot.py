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
import re
import sys
import threading
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import _vivarium


class AppError(Exception):
    """A start-up failure with a message meant for the person running Caddy;
    `refusal` when an extension module refused the app's interpreter."""

    def __init__(self, message: str, refusal: Refusal | None = None) -> None:
        super().__init__(message)
        self.refusal = refusal


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


# Values of the isolation setting.
INTERPRETER, SHARED, MAIN = _vivarium.ISOLATION_INTERPRETER, _vivarium.ISOLATION_SHARED, _vivarium.ISOLATION_MAIN


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


def _guard_exit(isolation: int, spec: str) -> None:
    """os._exit() ends the whole process, every app with it, and bypasses
    Caddy's shutdown. In an interpreter of the app's own it raises instead,
    as os.fork does; in the main interpreter, which owns the process, it
    still exits, after a line in the log that says who ended it."""
    import posix

    # The main interpreter's os module outlives the app: keep the first one.
    real_exit = getattr(_vivarium, "real_exit", None) or posix._exit
    _vivarium.real_exit = real_exit

    if isolation == MAIN:

        def logged_exit(status: int) -> None:
            try:
                _vivarium.log(_vivarium.LOG_ERROR, f"app {spec} calls os._exit({status}): the process exits now\n"
                              + "".join(traceback.format_stack(sys._getframe(1))))
            finally:
                real_exit(status)

        replacement = logged_exit
    else:

        def refused(status: int) -> None:
            raise RuntimeError(
                f"os._exit({status}) would end the whole Caddy process and every app in it; an app served "
                "by Vivarium cannot exit the process: raise an exception or return an error response instead"
            )

        replacement = refused
    os._exit = replacement
    posix._exit = replacement


def _apply_env(env: dict[str, str], isolation: int) -> None:
    """Sets the app's own variables (env, env_file) in this interpreter's
    os.environ, bypassing putenv: the process environment, which C code's
    getenv() and child processes read, stays Caddy's.

    In the main interpreter, whose os.environ outlives the app, it is first
    put back to what it was before the first app, so a reload drops what the
    previous instance set.
    """
    data = os.environ._data  # type: ignore[attr-defined]
    if isolation == MAIN:
        saved = getattr(_vivarium, "environ_before_apps", None)
        if saved is None:
            _vivarium.environ_before_apps = dict(data)
        else:
            data.clear()
            data.update(saved)
    for name, value in env.items():
        data[os.environ.encodekey(name)] = os.environ.encodevalue(value)


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


class ExtensionLoads:
    """While the app is imported: the extension module each ImportError came from.

    CPython names a refused module by its last part or not at all ("module md
    does not support loading in subinterpreters", "failed to import from
    subinterpreter due to exception"), and packages that try one implementation
    after another (psycopg) fold the refusals into one message of their own:
    the loader is the one that knows which module it was loading.
    `progress`, when given, is told ("loading" | "loaded" | "failed", module) as
    each extension module loads: what the app was importing when its process
    died (plugin/probe.go)."""

    def __init__(self, progress: Callable[[str, str], None] | None = None) -> None:
        self.failed: list[tuple[BaseException, str]] = []
        self._progress = progress

    def __enter__(self) -> ExtensionLoads:
        from importlib.machinery import ExtensionFileLoader

        self._loader = ExtensionFileLoader
        self._saved = create, execute = ExtensionFileLoader.create_module, ExtensionFileLoader.exec_module
        loads = self

        def create_module(loader: Any, spec: Any) -> Any:
            loads._tell("loading", spec.name)
            try:
                return create(loader, spec)
            except BaseException as e:
                loads.failed.append((e, spec.name))
                loads._tell("failed", spec.name)
                raise

        def exec_module(loader: Any, module: Any) -> None:
            # A multi-phase module runs its code here, after create_module.
            try:
                execute(loader, module)
            except BaseException as e:
                loads.failed.append((e, module.__name__))
                loads._tell("failed", module.__name__)
                raise
            loads._tell("loaded", module.__name__)

        ExtensionFileLoader.create_module = create_module  # type: ignore[method-assign]
        ExtensionFileLoader.exec_module = exec_module  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        self._loader.create_module, self._loader.exec_module = self._saved  # type: ignore[method-assign]

    def _tell(self, what: str, name: str) -> None:
        if self._progress is not None:
            self._progress(what, name)

    def module_of(self, exc: BaseException) -> str | None:
        for failed, name in self.failed:
            if failed is exc:
                return name
        return None


# Why an extension module cannot load in this interpreter (Refusal.why).
OWN_GIL = "own-gil"  # it declares no support for interpreters with their own GIL
ONCE = "once"  # it loads in one interpreter per process, and one has it already
INIT = "init"  # its init function failed, run in the main interpreter

_REFUSED = re.compile(r"module ([\w.]+) does not support loading in subinterpreters")
# PyO3's, numpy's and Cython's words for loading in one interpreter per process.
_ONCE = re.compile(
    r"PyO3 modules .*subinterpreters|more than once per process|only be loaded into one interpreter per process"
)
_INIT_FAILED = "failed to import from subinterpreter due to exception"


@dataclass
class Refusal:
    extension: str
    why: str
    detail: str = ""  # what the package or the init function said, when it adds to ours
    pyo3: bool = False  # PyO3 said so itself


def refusal(exc: BaseException, loads: ExtensionLoads) -> Refusal | None:
    """Why an extension module refused this interpreter, from exc's chain; None
    when exc is not about that."""
    for e in _chain(exc):
        if not isinstance(e, ImportError):
            continue
        text = str(e)
        loaded = loads.module_of(e)
        found = _REFUSED.search(text)
        if found:
            return Refusal(loaded or found.group(1), OWN_GIL, _package_said(text, found.group(0)))
        if _INIT_FAILED in text:
            detail = _vivarium.init_failure() or ""
            return Refusal(loaded or _last_failed(loads), ONCE if _ONCE.search(detail) else INIT, detail)
        if _ONCE.search(text):
            return Refusal(loaded or _last_failed(loads), ONCE, pyo3="PyO3" in text)
    return None


def _package_said(text: str, refusal_line: str) -> str:
    """A package's own message around CPython's refusal, when it adds to it
    (psycopg lists the implementations it tried); not a long essay (numpy's)."""
    if text == refusal_line or len(text) > 600:
        return ""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _last_failed(loads: ExtensionLoads) -> str:
    return loads.failed[-1][1] if loads.failed else "?"


def _chain(exc: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def refusal_message(module_name: str, r: Refusal) -> str:
    """What went wrong, naming the extension module; plugin/check.go adds which
    isolation works, having tried them in a separate process."""
    head = f"importing '{module_name}' failed: extension module '{r.extension}'"
    if r.why == ONCE:
        built = " is built with PyO3, which" if r.pyo3 else ""
        return (
            f"{head}{built} loads in only one interpreter per process, and another interpreter of "
            "this process has loaded it already: another app's, or the instance of this app that a "
            "reload replaces (a new interpreter cannot load it again)"
        )
    if r.why == INIT:
        said = f": {r.detail}" if r.detail else " (CPython reported no error)"
        return (
            f"{head} failed to initialise; CPython runs every extension module's init function in "
            f"the main interpreter first, and there it raised{said}"
        )
    said = f" ({r.detail})" if r.detail else ""
    return (
        f"{head} does not support interpreters with their own GIL, so this app cannot have an "
        f"interpreter of its own{said}"
    )


def _import_app(
    spec: str, working_dir: str, venv: str, default_attr: str, progress: Callable[[str, str], None] | None = None
) -> Any:
    module_name, _, attr = spec.partition(":")
    attr = attr or default_attr
    if not module_name:
        raise AppError(f'module spec "{spec}" names no module; write it as "package.module:{default_attr}"')
    where = f"working_dir {working_dir or '(none)'}" + (f" or venv {venv}" if venv else "")
    loads = ExtensionLoads(progress)
    try:
        with loads:
            module = importlib.import_module(module_name)
    except BaseException as e:
        refused = refusal(e, loads)
        if refused:
            raise AppError(refusal_message(module_name, refused), refused) from None
        if isinstance(e, ModuleNotFoundError):
            if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
                raise AppError(
                    f"cannot find module '{module_name}' in {where} ({e}); check the module name and working_dir"
                ) from None
            raise AppError(
                f"importing '{module_name}' failed: {e}; is '{e.name}' installed in "
                f"{'venv ' + venv if venv else 'a venv (set venv)'}?\n{traceback.format_exc()}"
            ) from None
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


def _progress_writer(cfg: dict[str, Any]) -> Callable[[str, str], None] | None:
    """Where a check run in a child process tells, as each extension module
    loads, what it loads (plugin/probe.go), so that even a crash names it."""
    fd = json.loads(cfg["options"]).get("progress_fd")
    if fd is None:
        return None

    def tell(what: str, name: str) -> None:
        os.write(fd, (json.dumps({what: name}) + "\n").encode())

    return tell


def _share_path(isolation: int) -> None:
    # For the imports of extension init functions run in the main interpreter
    # (pyadapters/main.py).
    if isolation != MAIN:
        _vivarium.share_path(list(sys.path))


def _interface(app: Any) -> str:
    """"asgi" for an ASGI 3 app (a coroutine function, or an object whose
    __call__ is one: Starlette, FastAPI, Django's ASGIHandler), else "wsgi"."""
    import inspect

    call = getattr(app, "__call__", None)
    if inspect.iscoroutinefunction(app) or (call is not None and inspect.iscoroutinefunction(call)):
        return "asgi"
    return "wsgi"


def _check(cfg: dict[str, Any]) -> str:
    """For `caddy python-check`: imports the app and reports, as JSON, whether
    it loaded and which extension modules outside the standard library it loaded."""
    from importlib.machinery import ExtensionFileLoader

    before = set(sys.modules)
    report: dict[str, Any] = {
        "ok": True, "error": None, "refused": None, "why": None, "extensions": [], "interface": None,
    }
    try:
        _setup_path(cfg["working_dir"], cfg["venv"])
        _share_path(int(cfg["isolation"]))
        options = json.loads(cfg["options"])
        # The app's own variables, for an import that reads them (the probe of
        # isolation auto and of python-server carries them).
        _apply_env(options.get("env") or {}, int(cfg["isolation"]))
        default_attr = options.get("default_attr") or "app"
        app = _import_app(cfg["module"], cfg["working_dir"], cfg["venv"], default_attr, _progress_writer(cfg))
        report["interface"] = _interface(app)
    except AppError as e:
        report.update(ok=False, error=str(e))
        if e.refusal is not None:
            report.update(refused=e.refusal.extension, why=e.refusal.why)
    stdlib = tuple(os.path.join(p, "") for p in _stdlib_path())
    files = set()
    for name in sorted(set(sys.modules) - before):
        module = sys.modules[name]
        path = getattr(module, "__file__", None) or ""
        if not isinstance(getattr(module, "__loader__", None), ExtensionFileLoader) or path.startswith(stdlib):
            continue
        # A package may list one extension under more names (gevent): report it
        # once, by the name it was loaded as.
        if path not in files:
            files.add(path)
            report["extensions"].append({"name": getattr(module, "__name__", name), "file": path})
    return json.dumps(report)


def _probe(cfg: dict[str, Any]) -> str:
    """For `caddy python-check`: loads each extension module file on its own,
    without its package, and reports which load in this interpreter."""
    import importlib.util

    _setup_path(cfg["working_dir"], cfg["venv"])
    _share_path(int(cfg["isolation"]))
    tell = _progress_writer(cfg)
    results = []
    for ext in json.loads(cfg["module"]):
        if tell is not None:
            tell("loading", ext["name"])
        try:
            spec = importlib.util.spec_from_file_location(ext["name"], ext["file"])
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            results.append({"name": ext["name"], "ok": True, "error": None})
        except BaseException as e:
            detail = _vivarium.init_failure() if _INIT_FAILED in str(e) else None
            error = f"{type(e).__name__}: {e}" + (f" ({detail})" if detail else "")
            results.append({"name": ext["name"], "ok": False, "error": error})
        if tell is not None:
            tell("loaded" if results[-1]["ok"] else "failed", ext["name"])
    return json.dumps(results)


def boot(cfg: dict[str, Any]) -> tuple[str | None, Any, Any]:
    """Called by the runtime: (error message, None, None) or (None, handler, base environ);
    (error message, True, None) when an extension module refused the interpreter.

    The kinds "check" and "probe" answer a JSON report in place of a handler.
    """
    sys.stdout = LogStream(_vivarium.LOG_STDOUT, "<stdout>")
    sys.stderr = LogStream(_vivarium.LOG_STDERR, "<stderr>")
    if cfg["kind"] == "check":
        return None, _check(cfg), None
    if cfg["kind"] == "probe":
        return None, _probe(cfg), None
    try:
        isolation = int(cfg["isolation"])
        options = json.loads(cfg["options"])
        if isolation == MAIN:
            _forget_app_modules()
            _refuse_fork()
        _apply_env(options.get("env") or {}, isolation)
        _guard_exit(isolation, cfg["module"])
        _setup_path(cfg["working_dir"], cfg["venv"])
        _share_path(isolation)
        adapter = importlib.import_module(f"vivarium_{cfg['kind']}")
        before = set(sys.modules)
        try:
            app = _import_app(cfg["module"], cfg["working_dir"], cfg["venv"], adapter.DEFAULT_ATTR)
        finally:
            if isolation == MAIN:
                _remember_app_modules(before, cfg["working_dir"], cfg["venv"])
        handler, base = adapter.make_handler(app, options)
    except AppError as e:
        return str(e), e.refusal is not None or None, None
    except BaseException:
        return f"app failed to start:\n{traceback.format_exc()}", None, None
    return None, handler, base


# Code objects of the adapters' functions that run one request, each with the
# request's token in a local named `token`: where() finds a request's frame
# by them. Filled in by the adapters.
REQUEST_CODES: set[Any] = set()


def header_block(headers: Iterable[tuple[Any, Any]], status: Any = None) -> bytes:
    """Headers as Go reads them (plugin/headers.go): name, value, name, value
    ... each ended by NUL but the last, after the status in a response head.
    WSGI gives str (latin-1), ASGI bytes; joined as given, then encoded once."""
    fields = [] if status is None else [status]
    for name, value in headers:
        fields.append(name)
        fields.append(value)
    if fields and isinstance(fields[0], str):
        block = "\0".join(fields).encode("latin-1")
    else:
        block = b"\0".join(fields)
    if block.count(0) != max(len(fields) - 1, 0):
        raise ValueError("a response header contains a NUL byte")
    return block


# How many innermost frames where() shows.
STACK_LIMIT = 30


def where(frame: Any, token: int) -> tuple[str, bool, bool]:
    """Called by the runtime (interrupt.c) from another thread, with this
    interpreter's GIL held, about a thread it has paused: its stack, innermost
    frame last; a flag the runtime decides itself (False); and whether it is
    an event loop waiting for events."""
    if frame is None:
        return "(no Python frame: the thread is in C code)", False, False
    code = frame.f_code
    idle = code.co_name == "select" and code.co_filename.endswith("selectors.py")
    lines = traceback.format_stack(frame, limit=STACK_LIMIT)
    depth, f = 0, frame
    while f is not None and depth <= 100_000:
        f = f.f_back
        depth += 1
    if depth > STACK_LIMIT:
        more = f"over {depth - 1}" if f is not None else str(depth)
        lines.insert(0, f"  ... {more} frames in all; the innermost {STACK_LIMIT}:\n")
    return "".join(lines).rstrip("\n"), False, idle


# How long threads the app started may take to finish when its interpreter ends.
THREAD_GRACE_SECONDS = 5.0


def shutdown() -> bool:
    """Called by the runtime before the interpreter ends. False means: do not end it.

    Ending an interpreter joins every non-daemon thread the app started; one
    that never returns would hang the thread that creates and ends every
    interpreter of the process. Such an interpreter is left alive instead.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    import time

    deadline = time.monotonic() + THREAD_GRACE_SECONDS
    # Not the app's: this thread, and Python's main thread, which in the wheel
    # is the python process's own, waiting in Caddy for good.
    ours = (threading.current_thread(), threading.main_thread())
    for thread in threading.enumerate():
        if thread in ours or thread.daemon:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threading.enumerate() if t not in ours and not t.daemon and t.is_alive()]
    if stuck:
        _vivarium.log(
            _vivarium.LOG_ERROR,
            f"threads {', '.join(stuck)} still run {THREAD_GRACE_SECONDS:g} s after the app was stopped; "
            "its interpreter is left alive, since ending it would wait for them forever; "
            "threads an app starts must end when it stops",
        )
        return False
    return True
