"""Where the time of each open-loop message goes: its commit and its delivery, step by step, from a traced run.

Read by `python -m bench.commit_trace --open-loop-rate N` (which runs the open loop of bench/open_loop.py on a
traced cluster). Under load many messages share a frame, a log entry and an ack, so a message is followed by
what the trace events name (bench/_trace_hook.py): its sender's nonce (the j-th put of a sender process has
nonce j + 1), the frame and the acks that carry it (last nonce), the leader's session and proposer (nonce runs
per client id), the Raft index of the entry (the first append on the leader after the proposal), and its due
time, which the listener reads back from the value. Each step is the time from the previous step's event to
this one's; the means add up to the mean total.
"""

from __future__ import annotations

import bisect
import collections
import glob
import itertools
import os
from dataclasses import dataclass, field

from bench.stats import percentile

NS_PER_MS = 1e6


@dataclass
class _Process:
    tag: str  # "n<id>" for a node, "p<pid>" for any other process
    events: list[tuple[int, str, str]] = field(default_factory=list)  # (ns, thread, event with its detail)

    def named(self, name: str) -> list[tuple[int, str]]:
        """(ns, detail) of each event called `name`, in time order."""
        out = []
        for ns, _, event in self.events:
            head, _, detail = event.partition(":")
            if head == name:
                out.append((ns, detail))
        return out


def load_processes(trace_dir: str) -> list[_Process]:
    processes = []
    for path in glob.glob(os.path.join(trace_dir, "*.txt")):
        with open(path, encoding="utf-8") as f:
            argv = f.readline().split()
            node = "node" in argv and "--id" in argv
            tag = f"n{argv[argv.index('--id') + 1]}" if node else f"p{os.path.basename(path)[:-4]}"
            process = _Process(tag)
            for line in f:
                ns, thread, event = line.split()
                process.events.append((int(ns), thread, event))
            process.events.sort()
            processes.append(process)
    return processes


class _Marks:
    """Times at which a monotone counter (a last nonce, a Raft index) reached each value: `at(n)` is the first
    time it was >= n."""

    def __init__(self, pairs: list[tuple[int, int]]) -> None:
        self.values: list[int] = []
        self.times: list[int] = []
        for ns, value in pairs:
            if not self.values or value > self.values[-1]:
                self.values.append(value)
                self.times.append(ns)

    def at(self, value: int) -> int | None:
        i = bisect.bisect_left(self.values, value)
        return self.times[i] if i < len(self.values) else None


def _by_client(events: list[tuple[int, str]], value_at: int) -> dict[str, list[tuple[int, int]]]:
    """Events detailed `<client id>:...`: per client id, (ns, the detail's field at `value_at`)."""
    out: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
    for ns, detail in events:
        parts = detail.split(":")
        out[parts[0]].append((ns, int(parts[value_at])))
    return out


@dataclass
class _Leader:
    accepts: dict[str, _Marks]  # per client id: last nonce taken in
    proposed: dict[str, list[tuple[int, int]]]  # per client id: (ns, last nonce proposed)
    entry_of_proposal: dict[int, int]  # propose ns -> Raft index
    appended: dict[int, int]  # Raft index -> ns appended on the leader
    committed: dict[int, int]  # Raft index -> ns the leader learnt the commit (apply begins)
    delivered: dict[str, _Marks]  # per client id: outcomes handed to the session
    written: dict[str, _Marks]  # per client id: acks taken by the session writer
    listen_sends: list[int]  # ns of each listener frame written
    quorum_synced: dict[int, int]  # Raft index -> ns the first follower had it fsynced
    quorum_replied: dict[int, int]  # Raft index -> ns the first follower sent its reply after that


def _leader(processes: list[_Process]) -> tuple[_Process, list[_Process]]:
    nodes = [p for p in processes if p.tag.startswith("n")]
    leader = max(nodes, key=lambda p: len(p.named("s.accept")))
    return leader, [p for p in nodes if p is not leader]


def _proposals(leader: _Process) -> tuple[dict[str, list[tuple[int, int]]], dict[int, int]]:
    """Per client id, (ns, last nonce) of each run proposed; and each proposal's Raft index (the first append
    on the leader after it, in order)."""
    first_nonce: dict[str, int] = {}
    for _, detail in leader.named("s.accept"):
        cid, first, _ = detail.split(":")
        first_nonce.setdefault(cid, int(first))
    next_nonce = dict(first_nonce)
    proposed: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
    proposals = leader.named("p.propose")
    for ns, detail in proposals:
        for run in detail.split(","):
            cid, count = run.split("/")
            if cid in next_nonce:
                next_nonce[cid] += int(count)
                proposed[cid].append((ns, next_nonce[cid] - 1))
    appends = [(ns, int(idx)) for ns, idx in leader.named("j.add")]
    entry_of: dict[int, int] = {}
    at = 0
    for ns, _ in proposals:
        while at < len(appends) and appends[at][0] < ns:
            at += 1
        if at < len(appends):
            entry_of[ns] = appends[at][1]
            at += 1
    return proposed, entry_of


def _followers(followers: list[_Process]) -> tuple[dict[int, int], dict[int, int]]:
    """Per Raft index: when the first follower had it fsynced, and when the first sent its reply after that."""
    synced: dict[int, int] = {}
    replied: dict[int, int] = {}
    for follower in followers:
        pending: list[int] = []  # indexes appended, not yet synced
        after_sync: list[int] = []  # synced, reply not yet sent
        for ns, _, event in follower.events:
            head, _, detail = event.partition(":")
            if head == "j.add":
                pending.append(int(detail))
            elif head == "j.synced":
                for idx in pending:
                    synced[idx] = min(synced.get(idx, ns), ns)
                after_sync.extend(pending)
                pending = []
            elif head == "n.send-next_node_idx":
                for idx in after_sync:
                    replied[idx] = min(replied.get(idx, ns), ns)
                after_sync = []
    return synced, replied


def leader_view(processes: list[_Process]) -> _Leader:
    leader, followers = _leader(processes)
    proposed, entry_of = _proposals(leader)
    synced, replied = _followers(followers)
    return _Leader(
        accepts={c: _Marks(v) for c, v in _by_client(leader.named("s.accept"), 1).items()},
        proposed=proposed,
        entry_of_proposal=entry_of,
        appended={int(idx): ns for ns, idx in leader.named("j.add")},
        committed={int(idx): ns for ns, idx in leader.named("a.commit")},
        delivered={c: _Marks(v) for c, v in _by_client(leader.named("s.deliver"), 1).items()},
        written={c: _Marks(v) for c, v in _by_client(leader.named("s.writer"), 1).items()},
        listen_sends=[ns for ns, _ in leader.named("l.send")],
        quorum_synced=synced,
        quorum_replied=replied,
    )


COMMIT_STEPS = (
    "generator: due -> put() called",
    "client: put() -> in a frame (waits for the window of frames in flight)",
    "gRPC: frame -> leader's session takes it in",
    "leader: taken in -> proposed (waits for the entry in flight)",
    "leader: proposed -> appended to its journal (tick thread)",
    "followers: -> first follower's fsync done",
    "followers: -> its reply sent",
    "leader: reply -> commit known, apply begins",
    "leader: apply -> outcome to the session",
    "leader: outcome -> session writer takes the ack",
    "gRPC: leader -> client's session thread",
    "client: -> the generator's acker sees committed()",
)
DELIVERY_STEPS = (
    "commit known on the leader (from due)",
    "leader: apply -> outcome to the sessions",
    "leader: -> listener frame written",
    "gRPC: -> listener client's thread",
    "listener: -> the generator's reader decodes it",
)


@dataclass
class _Message:
    due: int
    marks: list[int | None]  # ns of each commit step's end, COMMIT_STEPS order


def _proposal_at(proposed: list[tuple[int, int]], nonce: int) -> tuple[int, int] | None:
    i = bisect.bisect_left([last for _, last in proposed], nonce)
    return proposed[i] if i < len(proposed) else None


def _sender_messages(process: _Process, leader: _Leader) -> list[_Message]:
    dues = [int(d) for _, d in process.named("o.due")]
    puts = [ns for ns, _ in process.named("c.put")]
    committed = [ns for ns, _ in process.named("c.committed")]
    frames = _by_client(process.named("c.frame"), 1)
    if not frames or len(frames) != 1:
        return []
    cid, frame_pairs = next(iter(frames.items()))
    frame_marks = _Marks(frame_pairs)
    ack_marks = _Marks([(ns, int(d)) for ns, d in process.named("c.ack-commit")])
    proposed = sorted(leader.proposed.get(cid, []), key=lambda p: p[1])
    messages = []
    for j, due in enumerate(dues):
        if not due or j >= len(puts) or j >= len(committed):
            continue  # the warm-up put, or past the end of the records
        nonce = j + 1
        proposal = _proposal_at(proposed, nonce)
        idx = leader.entry_of_proposal.get(proposal[0]) if proposal else None
        marks = [
            puts[j],
            frame_marks.at(nonce),
            leader.accepts[cid].at(nonce) if cid in leader.accepts else None,
            proposal[0] if proposal else None,
            leader.appended.get(idx) if idx else None,
            leader.quorum_synced.get(idx) if idx else None,
            leader.quorum_replied.get(idx) if idx else None,
            leader.committed.get(idx) if idx else None,
            leader.delivered[cid].at(nonce) if cid in leader.delivered else None,
            leader.written[cid].at(nonce) if cid in leader.written else None,
            ack_marks.at(nonce),
            committed[j],
        ]
        messages.append(_Message(due, marks))
    return messages


def _table(title: str, steps: tuple[str, ...], rows: list[list[int]]) -> list[str]:
    lines = [
        f"{title}: {len(rows)} messages. Per step, ms: mean (the means add up to the mean total), p50, p99.",
        "",
        "| step | mean | p50 | p99 |",
        "|---|---|---|---|",
    ]
    for i, step in enumerate(steps):
        values = [row[i] / NS_PER_MS for row in rows]
        mean = sum(values) / len(values)
        lines.append(f"| {step} | {mean:.2f} | {percentile(values, 0.5):.2f} | {percentile(values, 0.99):.2f} |")
    totals = [sum(row) / NS_PER_MS for row in rows]
    lines.append(
        f"| **total** | {sum(totals) / len(totals):.2f} | {percentile(totals, 0.5):.2f} | "
        f"{percentile(totals, 0.99):.2f} |"
    )
    return [*lines, ""]


def _steps(due: int, marks: list[int | None]) -> list[int] | None:
    if any(m is None for m in marks):
        return None
    times = [due, *[m for m in marks if m is not None]]
    steps = [b - a for a, b in itertools.pairwise(times)]
    return steps if all(s >= 0 for s in steps) else None


def _delivery_rows(processes: list[_Process], leader: _Leader, by_due: dict[int, _Message]) -> list[list[int]]:
    rows = []
    for process in processes:
        receipts = [ns for ns, _ in process.named("l.recv")]
        for ns, detail in process.named("o.got"):
            message = by_due.get(int(detail.split(":")[0]))
            if message is None:
                continue
            commit, applied = message.marks[7], message.marks[8]
            if commit is None or applied is None:
                continue
            i = bisect.bisect_left(leader.listen_sends, applied)
            sent = leader.listen_sends[i] if i < len(leader.listen_sends) else None
            k = bisect.bisect_left(receipts, sent) if sent is not None else len(receipts)
            received = receipts[k] if k < len(receipts) else None
            steps = _steps(message.due, [commit, applied, sent, received, ns])
            if steps is not None:
                rows.append(steps)
    return rows


def report(trace_dir: str, skip_s: float = 0.5) -> str:
    """The commit and delivery budgets of the messages due after the first `skip_s` of the schedule."""
    processes = load_processes(trace_dir)
    leader = leader_view(processes)
    messages = [m for p in processes if p.tag.startswith("p") for m in _sender_messages(p, leader)]
    if not messages:
        raise SystemExit("no open-loop messages in the records: was the run traced?")
    start = min(m.due for m in messages) + int(skip_s * 1e9)
    messages = [m for m in messages if m.due >= start]
    rows = [s for m in messages if (s := _steps(m.due, m.marks)) is not None]
    by_due = {m.due: m for m in messages}
    entries = sorted({v for v in leader.entry_of_proposal.values()})
    lines = [
        f"Leader: {len(entries)} entries proposed in the run; "
        f"{len(messages)} messages due after the first {skip_s} s, {len(rows)} followed through every step.",
        "",
        *_table("Commit", COMMIT_STEPS, rows),
        *_table("Delivery", DELIVERY_STEPS, _delivery_rows(processes, leader, by_due)),
    ]
    return "\n".join(lines)
