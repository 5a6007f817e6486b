"""No program runs on a thread whose stack is unknown: every call lands on a thread of PROGRAM_THREAD_STACK_BYTES."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sandbox_helpers import context, put_program

from laminar.limits import PROGRAM_THREAD_STACK_BYTES
from laminar.node._applier import Applier
from laminar.node._entry import encode_run
from laminar.node._metrics import NodeMetrics, Sample
from laminar.node.sandbox import (
    TopicRuntime,
    check_program,
    on_program_thread,
    program_thread_stacks,
    start_program_thread,
)
from laminar.node.sandbox import _runtime as runtime_module
from laminar.node.sandbox import _threads as threads_module
from laminar.node.sandbox._threads import _stack_bytes
from laminar.node.state_machine import StateMachine
from laminar.node.store import Store
from laminar.v1 import laminar_pb2 as pb

SMALL_STACK_BYTES = 256 << 10
PROGRAM = put_program("ctx.state['n'] = ctx.state.get('n', 0) + 1\nctx.put(key, value)", "x = 1\n")

Seen = list[tuple[str, int | None]]  # (thread name, its stack in bytes) of each program run


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> Iterator[Seen]:
    """Where each handler call and module body ran."""
    where: Seen = []

    def note() -> None:
        where.append((threading.current_thread().name, _stack_bytes()))

    invoke, run_module = runtime_module.TopicRuntime._invoke, runtime_module._run_module

    def noting_invoke(self: TopicRuntime, *args: Any) -> Any:
        note()
        return invoke(self, *args)

    def noting_run_module(*args: Any) -> Any:
        note()
        return run_module(*args)

    monkeypatch.setattr(runtime_module.TopicRuntime, "_invoke", noting_invoke)
    monkeypatch.setattr(runtime_module, "_run_module", noting_run_module)
    yield where


def _on_thread(fn: Callable[[], None], stack_bytes: int) -> None:
    """Run fn on a new thread started with `stack_bytes` of stack, as code the sandbox does not control would."""
    saved = threading.stack_size(stack_bytes)
    try:
        thread = threading.Thread(target=fn)
        thread.start()
    finally:
        threading.stack_size(saved)
    thread.join()


def _use_every_entry_point() -> None:
    check_program(PROGRAM)
    runtime = TopicRuntime.start(PROGRAM, None)
    assert runtime.on_put(context(), b"k", b"v").ok
    again = TopicRuntime.start(PROGRAM, runtime.state_bytes())
    assert again.on_put(context(11), b"k", b"v").ok


def test_programs_called_from_the_main_thread_run_on_a_program_thread(seen: Seen) -> None:
    """Called from the main thread (its stack is whatever `ulimit -s` says), every entry point hands the program over
    to a thread with the program stack."""
    assert threading.current_thread() is threading.main_thread()
    assert not on_program_thread()
    _use_every_entry_point()
    assert len(seen) == 5
    assert all(name != threading.main_thread().name for name, _ in seen), seen
    assert all(size is not None and size >= PROGRAM_THREAD_STACK_BYTES for _, size in seen), seen


def test_programs_called_from_a_small_stack_run_on_a_program_thread(seen: Seen) -> None:
    """Called from a thread of 256 KiB of stack (a request thread, a library's thread), programs still run on a thread
    with the program stack."""
    failures: list[BaseException] = []

    def use() -> None:
        try:
            assert not on_program_thread()
            _use_every_entry_point()
        except BaseException as exc:  # noqa: BLE001 -- reported by the test's own thread
            failures.append(exc)

    _on_thread(use, SMALL_STACK_BYTES)
    assert not failures, failures
    assert len(seen) == 5
    assert all(size is not None and size >= PROGRAM_THREAD_STACK_BYTES for _, size in seen), seen


def test_program_threads_get_their_stack_whatever_the_process_default() -> None:
    """start_program_thread and program_thread_stacks give PROGRAM_THREAD_STACK_BYTES even when the process default
    is smaller; a thread started outside them, with a small stack, may not run programs."""
    found: dict[str, tuple[bool, int | None]] = {}

    def probe(name: str) -> Callable[[], None]:
        return lambda: found.__setitem__(name, (on_program_thread(), _stack_bytes()))

    saved = threading.stack_size(SMALL_STACK_BYTES)
    try:
        started = start_program_thread(probe("started"), "probe")
        with program_thread_stacks():
            library = threading.Thread(target=probe("library"))
            library.start()
        other = threading.Thread(target=probe("other"))
        other.start()
    finally:
        threading.stack_size(saved)
    for thread in (started, library, other):
        thread.join()
    assert found["started"] == (True, PROGRAM_THREAD_STACK_BYTES)
    assert found["library"] == (True, PROGRAM_THREAD_STACK_BYTES)
    assert found["other"] == (False, SMALL_STACK_BYTES)


def _no_sample() -> Sample:
    raise AssertionError("no metrics are served here")


def _create_and_put(nonce: int) -> bytes:
    mutations = [pb.Mutation(nonce=nonce, kind=pb.PUT, topic="p", key=b"k", value=b"v")]
    if nonce == 1:
        mutations = [pb.Mutation(nonce=1, kind=pb.CREATE_TOPIC, topic="p", program=PROGRAM)]
    frame = pb.MutationFrame(mutations=mutations).SerializeToString()
    return encode_run(uuid.UUID(int=1).bytes, frame)


def test_the_apply_pipeline_runs_programs_on_program_threads(tmp_path: Path, seen: Seen) -> None:
    """The node's apply thread, a Raft thread started in program_thread_stacks() applying a small entry itself, and an
    inline apply from a thread of unknown stack all run their program calls on threads with the program stack."""
    store = Store(str(tmp_path / "store"))
    saved = threading.stack_size(SMALL_STACK_BYTES)  # the apply thread must not take the process default
    try:
        applier = Applier(1, store, StateMachine(store), NodeMetrics(_no_sample), lambda _: None, lambda _: None)
    finally:
        threading.stack_size(saved)
    try:
        applier.on_commit(1, _create_and_put(1))  # from the main thread: inline, handed over

        def raft_thread(index: int) -> Callable[[], None]:
            return lambda: applier.on_commit(index, _create_and_put(index))

        with program_thread_stacks():
            tick = threading.Thread(target=raft_thread(2), name="raft")
            tick.start()
        tick.join()
        _on_thread(raft_thread(3), SMALL_STACK_BYTES)
        applier._queue.put((4, _create_and_put(4)))  # as on_commit queues an entry when the apply thread is busy
        assert applier.wait_applied(10)
    finally:
        applier.stop()
        store.close()
    names = [name for name, _ in seen]
    assert names[0] == "sandbox" and names[-1] == "apply" and "raft" in names, seen
    assert all(size is not None and size >= PROGRAM_THREAD_STACK_BYTES for _, size in seen), seen


def test_a_program_called_inside_program_thread_stacks_does_not_deadlock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Code run inside program_thread_stacks() (a library's constructor applying an entry) may call a program from
    a thread that is not a program thread, whose hand-over may start the sandbox's own thread: the block's lock
    lets it."""
    monkeypatch.setattr(threads_module, "_runner", None)  # the hand-over starts the sandbox's thread afresh
    done = threading.Event()

    def construct() -> None:
        with program_thread_stacks():
            assert TopicRuntime.start(PROGRAM, None).on_put(context(), b"k", b"v").ok
        done.set()

    runner = threading.Thread(target=construct, daemon=True)  # not a program thread: it hands its call over
    saved = threading.stack_size(SMALL_STACK_BYTES)
    try:
        runner.start()
    finally:
        threading.stack_size(saved)
    assert done.wait(30), "deadlocked"
