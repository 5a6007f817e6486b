"""Fail-stop: a node that cannot go on safely ends its process at once, and its supervisor restarts it.

Where what the node would do next could be wrong: a committed entry that cannot be applied (this node's state
would part from the others'), a store that a snapshot install closed and could not reopen, a failed fsync of the
Raft journal (after an I/O error the kernel may have dropped the dirty pages, and a retried fsync can then succeed
without them: "fsyncgate"). A restart reloads what the disk holds. The exit statuses are sysexits.h's, listed in
docs/operations.md. One function for every such stop, so each says why the same way.
"""

from __future__ import annotations

import logging
import os
from typing import NoReturn

EXIT_APPLY_FAILED = 70  # EX_SOFTWARE: a committed entry could not be applied
# EX_IOERR: a snapshot install closed the store and could not open the new one (the restart finishes the
# install, or keeps the old store and the leader sends the snapshot again)
EXIT_STORE_LOST = 74
EXIT_JOURNAL_SYNC_FAILED = 74  # EX_IOERR: an fsync of the Raft journal failed

_log = logging.getLogger("laminar.node")


def fail_stop(why: str, exit_status: int, log: logging.Logger = _log) -> NoReturn:
    """Log why (with the traceback of the exception being handled, if any) and end the process at once."""
    log.critical("%s; stopping this node (exit status %d)", why, exit_status, exc_info=True)
    logging.shutdown()
    os._exit(exit_status)
