"""Deterministic interleavings for store tests: an entry committed between two of a read's own reads.

A read that should answer from one point in time is given the apply thread's commit exactly where it would
hurt: inside the read, at its first call of a key helper (a static method of Keys or CallKeys). No race, no
threads: the tests that use it fail the same way every run when the read mixes two moments.
"""

from __future__ import annotations

from typing import Any

import pytest

from laminar.node.store import AppliedMark, Store, WriteSet


def commit_on_first_call(
    monkeypatch: pytest.MonkeyPatch, owner: type, name: str, store: Store, writes: WriteSet, mark: AppliedMark
) -> list[bool]:
    """Replace the static method owner.name by a wrapper whose first call commits `writes` with `mark` (as the
    apply thread would, between two reads of the caller). Returns a list that holds True once committed."""
    original = getattr(owner, name)
    committed: list[bool] = []

    def hooked(*args: Any) -> Any:
        if not committed:
            store.commit(writes, mark)
            committed.append(True)
        return original(*args)

    monkeypatch.setattr(owner, name, staticmethod(hooked))
    return committed
