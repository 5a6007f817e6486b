"""The `laminar` command's parts that need no cluster: version, exit codes, values, completion, parser."""

from __future__ import annotations

import io
import pathlib
import shutil
import subprocess
import sys

import pytest

from laminar import limits
from laminar._cli._exits import EPILOG, CommandFailed, Exit
from laminar._cli._values import read_value
from laminar.cli import build_parser, main

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`laminar --version` prints the package version and exits 0."""
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"laminar {version('laminar')} ")


def test_every_exit_code_is_documented_in_help_and_in_operations_md() -> None:
    """Each Exit code appears in `laminar --help` and in docs/operations.md, and the codes are distinct."""
    assert len({code.value for code in Exit}) == len(Exit)
    help_text = build_parser().format_help()
    operations = (ROOT / "docs" / "operations.md").read_text()
    for code in Exit:
        assert f"\n  {code.value} " in EPILOG, code
        assert f"| `{code.value}` |" in operations, code
    assert EPILOG in help_text


def test_usage_errors_exit_2_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong command line exits with the usage code and says why on stderr."""
    with pytest.raises(SystemExit) as exited:
        main(["put", "only-a-topic"])
    assert exited.value.code == Exit.USAGE
    captured = capsys.readouterr()
    assert captured.out == "" and "required: key, value" in captured.err


def test_values_come_from_text_stdin_or_a_file(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`-` reads stdin as bytes, `@path` a file, `@@x` is the text `@x`; over the value limit is refused."""
    big = bytes(range(256)) * 800  # 200 KiB, binary: no shell argument carries it
    (tmp_path / "v.bin").write_bytes(big)
    assert read_value(f"@{tmp_path / 'v.bin'}", "value") == big
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(big)))
    assert read_value("-", "value") == big
    assert read_value("@@home", "value") == b"@home"
    assert read_value("plain", "value") == b"plain"
    with pytest.raises(CommandFailed) as caught:
        read_value(f"@{tmp_path / 'missing'}", "value")
    assert caught.value.code == Exit.USAGE and "cannot read the value from" in caught.value.message
    (tmp_path / "huge").write_bytes(b"x" * (limits.VALUE_BYTES_MAX + 1))
    with pytest.raises(CommandFailed) as caught:
        read_value(f"@{tmp_path / 'huge'}", "value")
    assert caught.value.code == Exit.REJECTED and "over 1048576 bytes" in caught.value.message


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("laminar to", "topic"),
        ("laminar topic d", "describe destroy"),
        ("laminar topic describe chat --o", "--output"),
        ("laminar status -", "--help --addresses --timeout --tls-ca --tls-cert --tls-key --token --output --json"),
        ("laminar completion ", "--help bash zsh"),
        ("laminar cluster r", "run remove"),
    ],
)
def test_bash_completion_completes_commands_and_flags(typed: str, expected: str) -> None:
    """`laminar completion bash` defines a completion that offers the commands and flags of the parser."""
    script = subprocess.run(
        [sys.executable, "-m", "laminar", "completion", "bash"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    words = typed.split(" ")
    probe = (
        f"{script}\nCOMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}; "
        '_laminar_complete; echo "${COMPREPLY[*]}"'
    )
    completed = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True, timeout=30)
    assert sorted(completed.stdout.split()) == sorted(expected.split()), completed.stderr


def test_durations_for_max_age_take_a_unit_and_refuse_anything_else() -> None:
    """`--max-age`: 500ms, 90s, 10m, 12h, 7d in milliseconds; a bare number or a word is a usage error."""
    import argparse

    from laminar._cli._values import duration_ms

    assert [duration_ms(t) for t in ("500ms", "90s", "10m", "12h", "7d")] == [
        500,
        90_000,
        600_000,
        43_200_000,
        604_800_000,
    ]
    for bad in ("10", "ten", "1.5s", "-3s"):
        with pytest.raises(argparse.ArgumentTypeError, match="not a duration"):
            duration_ms(bad)
