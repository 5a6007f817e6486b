"""Deterministic interleavings for store tests: the apply thread's work done between two of a read's own reads.

A read is given a commit, or a snapshot install, exactly where it would hurt: at its first call of a helper it
makes there (a static method of Keys or CallKeys, or a function of the store's module). No race, no threads: the
tests that use it fail the same way every run when the read mixes two moments, or holds the old store open.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from laminar.node.store import AppliedMark, Store, WriteSet


def on_first_call(monkeypatch: pytest.MonkeyPatch, owner: object, name: str, action: Callable[[], None]) -> list[bool]:
    """Replace owner.name (a class's static method, or a module's function) by a wrapper whose first call runs
    `action` (on the reader's own thread, between two of its reads), then calls the original. Returns a list that
    holds True once the action ran."""
    original = getattr(owner, name)
    done: list[bool] = []

    def hooked(*args: Any) -> Any:
        if not done:
            action()
            done.append(True)
        return original(*args)

    monkeypatch.setattr(owner, name, staticmethod(hooked) if isinstance(owner, type) else hooked)
    return done


def commit_on_first_call(
    monkeypatch: pytest.MonkeyPatch, owner: type, name: str, store: Store, writes: WriteSet, mark: AppliedMark
) -> list[bool]:
    """on_first_call committing `writes` with `mark`, as the apply thread would."""
    return on_first_call(monkeypatch, owner, name, lambda: store.commit(writes, mark))


def install_on_first_call(
    monkeypatch: pytest.MonkeyPatch, owner: object, name: str, store: Store, checkpoint: str
) -> list[bool]:
    """on_first_call installing the snapshot in `checkpoint`, as a follower would."""
    return on_first_call(monkeypatch, owner, name, lambda: store.replace_with(checkpoint))
