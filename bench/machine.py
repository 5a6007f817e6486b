"""A description of the machine and software a run measured, for the report."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata

import psutil


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_revision(repo: str) -> str:
    """The checked-out commit, with "+changes" when the tree differs from it (read-only git calls)."""
    try:
        head = subprocess.run(
            ["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def load_average() -> str:
    """1, 5 and 15 minute load averages: other work on the machine shows up in the figures."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def describe(repo: str) -> dict[str, str]:
    memory = psutil.virtual_memory()
    return {
        "CPU": cpu_model(),
        "cores": f"{psutil.cpu_count(logical=False)} physical, {os.cpu_count()} logical",
        "load average at start": load_average(),
        "RAM": f"{memory.total / 2**30:.1f} GiB",
        "OS": platform.platform(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "pysyncobj / grpcio": f"{_version('pysyncobj')} / {_version('grpcio')}",
        "Laminar revision": git_revision(repo),
    }
