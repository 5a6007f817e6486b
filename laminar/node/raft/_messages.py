"""The shape of every Raft message a peer may send us, checked before pysyncobj sees it.

pysyncobj trusts its peers: a message with a missing key or a value of the wrong type raises in the
middle of its handler (after it may have deleted journal entries, for an append whose entries turn out
malformed), and the exception ends that tick's processing. A hostile or broken peer could also use
messages we never send: `apply_command` would put a command of its choosing into the leader's log
(entries our apply refuses to parse stop every node that applies them). So each message is checked
here against what pysyncobj (as corrected by RaftEngine) sends; anything else is dropped and counted.

What this does not defend: messages are pickles, and unpickling runs code. Only peers may reach the
Raft port; with `raft_password` set, pysyncobj authenticates (Fernet) every message before unpickling
it. See docs/durability.md, "Bad input on the Raft port".
"""

from __future__ import annotations

from typing import Any

from laminar import limits


def _is_int(value: Any, minimum: int = 0) -> bool:
    return type(value) is int and value >= minimum


def _is_bool(value: Any) -> bool:
    return type(value) is bool


def problem(message: Any) -> str | None:
    """Why `message` is not a Raft message we accept from a peer, or None if it is one."""
    if type(message) is not dict:
        return f"not a dict: {type(message).__name__}"
    kind = message.get("type")
    check = _CHECKS.get(kind) if isinstance(kind, str) else None
    if check is None:
        return f"type {kind!r} is not accepted from a peer"
    if not _is_int(message.get("term")) and not (kind == "next_node_idx" and "term" not in message):
        return f"{kind}: term {message.get('term')!r}"
    return check(message)


def _request_vote(m: dict[str, Any]) -> str | None:
    if not (_is_int(m.get("last_log_index")) and _is_int(m.get("last_log_term"))):
        return "request_vote: last_log_index/last_log_term"
    return None


def _term_only(_m: dict[str, Any]) -> str | None:
    return None


def _next_node_idx(m: dict[str, Any]) -> str | None:
    if not (_is_int(m.get("next_node_idx")) and _is_bool(m.get("reset")) and _is_bool(m.get("success"))):
        return "next_node_idx: next_node_idx/reset/success"
    return None


def _append_entries(m: dict[str, Any]) -> str | None:
    if not _is_int(m.get("commit_index")):
        return "append_entries: commit_index"
    if "prevLogIdx" not in m:
        return _snapshot_chunk(m)
    prev, prev_term = m.get("prevLogIdx"), m.get("prevLogTerm")
    if not ((prev is None and prev_term is None) or (_is_int(prev, 1) and _is_int(prev_term))):
        return "append_entries: prevLogIdx/prevLogTerm"
    if "transmission" in m:
        # pysyncobj's chunked mode for an entry over appendEntriesBatchSizeBytes: no entry of ours
        # reaches that size (RAFT_ENTRY_BYTES_MAX), and the mode unpickles whatever the chunks add up to.
        return "append_entries: chunked transmission mode is not used"
    return _entries(m.get("entries", []), prev, m["term"])


def _entries(entries: Any, prev: int | None, term: int) -> str | None:
    if type(entries) is not list:
        return "append_entries: entries is not a list"
    expected = None if prev is None else prev + 1
    last_term = 0
    for entry in entries:
        if not (type(entry) in (tuple, list) and len(entry) == 3):
            return "append_entries: an entry is not (command, index, term)"
        command, index, entry_term = entry
        if not (isinstance(command, bytes) and 0 < len(command) <= limits.RAFT_ENTRY_BYTES_MAX):
            return "append_entries: an entry's command is not bytes of an allowed size"
        if not (_is_int(index, 1) and _is_int(entry_term)):
            return "append_entries: an entry's index/term"
        if expected is not None and index != expected:
            return f"append_entries: entry index {index}, expected {expected}"
        if not last_term <= entry_term <= term:
            return "append_entries: entry terms must not decrease nor pass the message's term"
        expected, last_term = index + 1, entry_term
    return None


def _snapshot_chunk(m: dict[str, Any]) -> str | None:
    chunk = m.get("serialized")
    if chunk is None:
        return None
    if not (
        type(chunk) is tuple
        and len(chunk) == 3
        and isinstance(chunk[0], bytes)
        and _is_bool(chunk[1])
        and _is_bool(chunk[2])
        and _is_int(m.get("snapshot_offset"))
    ):
        return "append_entries: serialized/snapshot_offset"
    return None


_CHECKS = {
    "request_vote": _request_vote,
    "response_vote": _term_only,
    "timeout_now": _term_only,
    "append_entries": _append_entries,
    "next_node_idx": _next_node_idx,
    # Never accepted: "apply_command" and "apply_command_response" (RaftEngine never forwards
    # commands), utility commands (refused by the transport).
}
