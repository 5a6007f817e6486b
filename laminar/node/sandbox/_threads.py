"""The threads programs run on: each has a known stack of at least PROGRAM_THREAD_STACK_BYTES.

A call may recurse natively (compare, repr, json, pickle of nested data) up to its recursion headroom; whether the
stack holds that must not depend on the node's environment (`ulimit -s`, which sets the main thread's stack and the
default for new threads). So a program runs only on a *program thread*: one started here with the stack size given
explicitly (`start_program_thread`, the node's apply thread), or one whose stack this module measured and found big
enough (a thread started inside `program_thread_stacks()`, such as the Raft thread, which may apply a small entry
itself). Any other thread (the main thread, whose stack is whatever the environment says, a request thread, a test)
hands the work to the sandbox's own program thread and waits for it: `on_program_thread` decides, once per thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from laminar.limits import PROGRAM_HANDOFFS_QUEUED_MAX, PROGRAM_THREAD_STACK_BYTES

_T = TypeVar("_T")
_LOCAL = threading.local()  # .fit: whether this thread may run programs (decided once, see _measured_fit)
# threading.stack_size is process-wide: one setter at a time. Reentrant: code inside program_thread_stacks() (a
# library's constructor) may call into the sandbox, which may start its own program thread.
_STACK_SIZE_LOCK = threading.RLock()
_PTHREAD_ATTR_BYTES = 256  # room for a pthread_attr_t (56 bytes on x86-64 glibc)


def _stack_bytes() -> int | None:
    """The size of the calling thread's stack, as the C library knows it (Linux); None if it cannot tell."""
    try:
        libc = ctypes.CDLL(None)
        libc.pthread_self.restype = ctypes.c_ulong
        attr = ctypes.create_string_buffer(_PTHREAD_ATTR_BYTES)
        if libc.pthread_getattr_np(ctypes.c_ulong(libc.pthread_self()), attr) != 0:
            return None
        size = ctypes.c_size_t()
        try:
            if libc.pthread_attr_getstacksize(attr, ctypes.byref(size)) != 0:
                return None
        finally:
            libc.pthread_attr_destroy(attr)
        return size.value
    except (AttributeError, OSError):  # not glibc: no thread's stack is known, every program goes to our thread
        return None


def _measured_fit() -> bool:
    """A thread not started by start_program_thread may run programs if its stack is known to be big enough. Never
    the main thread: its stack grows on demand up to RLIMIT_STACK, which other mappings may cut short."""
    if threading.current_thread() is threading.main_thread():
        return False
    size = _stack_bytes()
    return size is not None and size >= PROGRAM_THREAD_STACK_BYTES


def on_program_thread() -> bool:
    """Whether the calling thread may run program code (see the module docstring). ~50 ns after its first call."""
    try:
        return _LOCAL.fit  # type: ignore[no-any-return]
    except AttributeError:
        fit = _LOCAL.fit = _measured_fit()
        return fit


@contextlib.contextmanager
def program_thread_stacks() -> Iterator[None]:
    """Threads started inside this block get a stack of PROGRAM_THREAD_STACK_BYTES (for a library's own thread,
    such as pysyncobj's tick thread, which the node cannot start itself). Process-wide while it lasts: keep it short."""
    with _STACK_SIZE_LOCK:
        saved = threading.stack_size(PROGRAM_THREAD_STACK_BYTES)
        try:
            yield
        finally:
            threading.stack_size(saved)


def start_program_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """Start a daemon thread that may run programs: its stack is PROGRAM_THREAD_STACK_BYTES, given explicitly."""

    def run() -> None:
        _LOCAL.fit = True
        target()

    thread = threading.Thread(target=run, name=name, daemon=True)
    with program_thread_stacks():
        thread.start()  # the stack is allocated here, at the size set now
    return thread


class _Job:
    __slots__ = ("args", "done", "error", "fn", "result")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


# Jobs waiting for the sandbox's program thread. Each caller waits for its own job (and past the bound, to queue
# it): handler calls run one at a time anyway (the runtime's lock).
_JOBS: queue.Queue[_Job] = queue.Queue(maxsize=PROGRAM_HANDOFFS_QUEUED_MAX)
_RUNNER_LOCK = threading.Lock()
_runner: threading.Thread | None = None


def _serve() -> None:
    while True:
        job = _JOBS.get()
        try:
            job.result = job.fn(*job.args)
        except BaseException as exc:  # noqa: BLE001 -- handed back to the caller, which raises it
            job.error = exc
        finally:
            job.done.set()


def run_on_program_thread(fn: Callable[..., _T], *args: Any) -> _T:
    """`fn(*args)` on a program thread: here if this is one, else on the sandbox's own, waiting for it."""
    if on_program_thread():
        return fn(*args)
    global _runner
    with _RUNNER_LOCK:
        if _runner is None:
            _runner = start_program_thread(_serve, "sandbox")
    job = _Job(fn, args)
    _JOBS.put(job)
    job.done.wait()
    if job.error is not None:
        error, job.error = job.error, None
        raise error
    return job.result  # type: ignore[no-any-return]
