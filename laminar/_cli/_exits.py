"""Exit codes of the `laminar` command: distinct per kind of failure, so scripts can branch.

Small numbers for answers the cluster gave, sysexits(3) numbers for failures to get one.
Documented in docs/operations.md and in `laminar --help` (EPILOG below).
"""

from __future__ import annotations

import enum

from laminar.errors import (
    ConfigError,
    InvalidRequest,
    LaminarError,
    PermissionDenied,
    Timeout,
    Unauthenticated,
    Unavailable,
)


class Exit(enum.IntEnum):
    OK = 0
    NOT_FOUND = 1  # `get`: the key is not set; `get`/`topic describe`: the topic does not exist
    USAGE = 2  # the command line is wrong (argparse's own convention)
    REJECTED = 3  # the cluster refused: committed as INVALID or ERROR, or the request broke a rule
    DEGRADED = 4  # `status`: a member is unreachable or no leader is known
    UNAVAILABLE = 69  # EX_UNAVAILABLE: no node answered, or no leader, within --timeout
    SOFTWARE = 70  # EX_SOFTWARE: an answer this version does not understand
    STARTUP = 71  # EX_OSERR: a node could not start (port in use, data directory locked)
    TIMEOUT = 75  # EX_TEMPFAIL: the leader has the mutation, not committed within --timeout
    NOPERM = 77  # EX_NOPERM: authorization is on and the caller is unknown or lacks the permission
    CONFIG = 78  # EX_CONFIG: the cluster config is unusable
    INTERRUPTED = 130  # Ctrl-C


EPILOG = """exit codes:
  0   success
  1   not found: the key is not set, or the topic does not exist
  2   usage: the command line is wrong
  3   rejected: the cluster committed the mutation as INVALID or ERROR, or refused the request
  4   degraded (status): a member is unreachable, or no leader is known
  69  unavailable: no node answered, or no leader, within --timeout
  70  internal: an answer this version of laminar does not understand
  71  start-up: a node could not start (port in use, data directory locked)
  75  timeout: the leader has the mutation but it did not commit within --timeout
  77  no permission: unknown caller (--token, client certificate) or a missing permission
  78  config: the cluster config is unusable
  130 interrupted (Ctrl-C)"""


class CommandFailed(Exception):
    """Ends a command with `code` after printing `message` on stderr (never cut short)."""

    def __init__(self, code: Exit, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def exit_code_of(error: LaminarError) -> Exit:
    if isinstance(error, Unavailable):
        return Exit.UNAVAILABLE
    if isinstance(error, Timeout):
        return Exit.TIMEOUT
    if isinstance(error, InvalidRequest):
        return Exit.REJECTED
    if isinstance(error, (PermissionDenied, Unauthenticated)):
        return Exit.NOPERM
    if isinstance(error, ConfigError):
        return Exit.CONFIG
    return Exit.SOFTWARE
