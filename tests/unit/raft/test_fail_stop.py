"""A failed fsync of the leader's journal stops the node with EX_IOERR (74) through the one fail_stop that every
such stop uses (docs/operations.md lists the statuses); it never carries on to count the entries as synced."""

from __future__ import annotations

import threading

import pytest

from laminar.node import _fail_stop
from laminar.node.raft import _journal


class FailingJournal:
    def sync(self) -> None:
        raise OSError(5, "Input/output error")


def test_a_failed_journal_fsync_stops_the_node_with_eio_and_reports_nothing_synced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sync thread hands the failure to fail_stop (exit status 74) and does not call on_synced."""
    stopped, release = threading.Event(), threading.Event()
    stops: list[tuple[str, int]] = []
    synced: list[bool] = []

    def fake_fail_stop(why: str, exit_status: int, log: object = None) -> None:
        stops.append((why, exit_status))
        stopped.set()
        release.wait(5.0)  # the process would be gone: the sync thread goes no further until the test is done

    monkeypatch.setattr(_journal, "fail_stop", fake_fail_stop)
    thread = _journal.SyncThread(FailingJournal(), lambda: synced.append(True))  # type: ignore[arg-type]
    try:
        thread.request()
        assert stopped.wait(5.0)
        assert stops == [("fsync of the Raft journal failed", _fail_stop.EXIT_JOURNAL_SYNC_FAILED)]
        assert _fail_stop.EXIT_JOURNAL_SYNC_FAILED == 74 and _fail_stop.EXIT_APPLY_FAILED == 70
        assert synced == []
    finally:
        release.set()
        thread.stop()
