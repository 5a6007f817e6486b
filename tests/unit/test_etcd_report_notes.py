"""bench/results/etcd.md: the hand-written notes below the marker survive a new run of the comparison."""

from __future__ import annotations

from pathlib import Path

from bench.etcd_report import NOTES_MARKER, _kept_notes


def test_notes_below_the_marker_are_kept_and_a_file_without_it_keeps_nothing(tmp_path: Path) -> None:
    """Only the text from the marker on is carried over; no file, or no marker, carries nothing."""
    path = tmp_path / "etcd.md"
    assert _kept_notes(str(path)) == ""
    path.write_text("# generated\n| table |\n", encoding="utf-8")
    assert _kept_notes(str(path)) == ""
    path.write_text(f"# generated\n| old table |\n{NOTES_MARKER}\n## Before and after\nfigures\n", encoding="utf-8")
    kept = _kept_notes(str(path))
    assert kept == f"\n{NOTES_MARKER}\n## Before and after\nfigures\n"
    assert "old table" not in kept
