"""The raw ceiling of the Raft engine: 3 pysyncobj processes on loopback, one small command per entry.

Laminar packs many intentions into one log entry, so its messages/s can exceed this; the ceiling
says what the engine alone does on this machine today, and every figure can be read against it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from tqdm import tqdm

from bench.processes import stop_popens
from bench.rows import RAFT_CEILING, Row
from bench.stats import rounded

NODES = 3
RESULT_POLL_S = 0.1
STARTUP_ALLOWANCE_S = 40.0  # interpreter start, election and settling, before the timed part
COMMAND_SECONDS_MAX = 0.005  # a run gives up if commands take longer than this each on average
ATTEMPTS = 2  # a run that saw an election is run once more
SETTINGS_LABELS = {"laminar": "pysyncobj, Laminar's settings", "defaults": "pysyncobj, its defaults"}


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_raft_ceiling(settings: str, commands: int, durability: str = "default") -> Row:
    """One row: commits/s of pysyncobj alone with the given settings ("laminar" or "defaults")."""
    row = Row(RAFT_CEILING, SETTINGS_LABELS[settings], NODES, 1, commands, durability)
    for attempt in range(1, ATTEMPTS + 1):
        result = _run_once(settings, commands)
        if result is not None and result["commits"] == commands:
            break
        # A leader change during the run fails the commands in flight: that run measured an election.
        row.status = "failed: " + _failure(result, commands)
        tqdm.write(f"raft ceiling, {settings}, attempt {attempt}: {row.status}")
    else:
        return row
    row.status = "ok"
    row.topic = f"{row.topic} (window {result['window']})"
    row.wall_s = rounded(result["elapsed_s"], 3)
    row.messages_per_s = rounded(commands / result["elapsed_s"], 0)
    row.us_per_message = rounded(result["elapsed_s"] / commands * 1e6)
    return row


def run_sequential(commands: int) -> dict[str, Any] | None:
    """pysyncobj alone with Laminar's settings, one command at a time: its "latencies_s" (None: no result)."""
    return _run_once("laminar", commands, sequential=True)


def _run_once(settings: str, commands: int, sequential: bool = False) -> dict[str, Any] | None:
    seconds = STARTUP_ALLOWANCE_S + commands * COMMAND_SECONDS_MAX
    with tempfile.TemporaryDirectory(prefix="laminar-bench-raft-") as root:
        result_path = os.path.join(root, "result.json")
        processes = _start_nodes(root, settings, commands, seconds, result_path, sequential)
        try:
            return _wait_for_result(result_path, processes, seconds)
        finally:
            stop_popens(processes)


def _failure(result: dict[str, Any] | None, commands: int) -> str:
    if result is None:
        return "no node reported a result (no stable leader?)"
    return f"{result['commits']} of {commands} commands committed (failures: {result['failures']})"


def _start_nodes(
    root: str, settings: str, commands: int, seconds: float, result: str, sequential: bool = False
) -> list[subprocess.Popen[bytes]]:
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(NODES)]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for index, address in enumerate(addresses):
            peers = ",".join(a for a in addresses if a != address)
            command = [
                sys.executable, "-m", "bench.raft_node", "--self", address, "--peers", peers,
                "--settings", settings, "--commands", str(commands), "--seconds", str(seconds),
                "--journal", os.path.join(root, f"journal-{index}"), "--result", result,
            ] + (["--sequential"] if sequential else [])  # fmt: skip
            # pysyncobj logs to stderr; keep it out of the progress display, in the temporary directory.
            with open(os.path.join(root, f"node-{index}.log"), "wb") as log:
                processes.append(subprocess.Popen(command, cwd=_repo_root(), stdout=log, stderr=subprocess.STDOUT))
    except BaseException:
        stop_popens(processes)
        raise
    return processes


def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _wait_for_result(path: str, processes: list[subprocess.Popen[bytes]], seconds: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                return dict(json.load(f))
        if all(p.poll() is not None for p in processes):
            return None
        time.sleep(RESULT_POLL_S)
    return None
