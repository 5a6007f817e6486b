"""A Listener's acknowledgements, sent as few intentions (docs/consumers.md).

An application acks every event; sending one intention per ack would cost a log entry's share per
event. Acks are gathered here instead and sent as one CONSUMER_ACK (durable: the newest offset) or
GROUP_ACK (group: the offsets) per CONSUMER_ACK_FLUSH_EVENTS events or CONSUMER_ACK_FLUSH_MS, whichever
comes first, and on flush() and close(). They travel through an ordinary Client, so they are resent
across fail-overs and take effect exactly once. A group member's flusher also says the member is alive
(GROUP_JOIN) a few times per lease, so an idle member keeps its place.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence

from laminar import limits
from laminar.client._admin import describe_topic
from laminar.client._client import Client, Pending
from laminar.client._connect import TLS
from laminar.errors import LaminarError
from laminar.v1 import laminar_pb2 as pb

ACK_FLUSH_S = limits.CONSUMER_ACK_FLUSH_MS / 1000
JOIN_TIMEOUT_S = 30.0  # a member's first join waits this long to commit (an election may be under way)
CLOSE_FLUSH_TIMEOUT_S = 30.0  # close() waits this long for the last acks to commit (a fail-over included)
HEARTBEATS_PER_LEASE = 4  # a member says it is alive this many times per lease


class Acks:
    """Acks of one durable consumer or one group member, batched; a thread flushes on time."""

    def __init__(
        self,
        addresses: Sequence[str] | str | None,
        tls: TLS | None,
        topic: str,
        name: str,
        member: str | None = None,
        join: pb.ConsumerOp | None = None,
        token: str | None = None,
    ) -> None:
        self.topic, self.name, self.member = topic, name, member
        self._client = Client(addresses, tls=tls, client_id=uuid.uuid4(), token=token)
        self._addresses, self._tls, self._token = addresses, tls, token
        self._cond = threading.Condition()
        self._through = 0  # durable: the newest offset the application acknowledged
        self._sent_through = 0  # durable: the newest offset sent
        self._offsets: list[int] = []  # group: offsets acknowledged and not sent yet
        self._unsent_since: float | None = None
        self._last: Pending | None = None
        self._closed = False
        self.stale_acks = 0  # group: acks the cluster ignored (the lease had gone to another member)
        self.error: LaminarError | None = None
        self._heartbeat_s = 0.0
        self._join = join
        # A member sends its acks at a quarter of what it may hold, so new leases arrive while it works
        # on the rest (acking all it holds, then waiting for more, would stall it a commit per batch).
        self._group_flush = min(limits.CONSUMER_ACK_FLUSH_EVENTS, limits.GROUP_ACK_OFFSETS_MAX)
        if join is not None:
            self._joined(join)
        self._thread = threading.Thread(target=self._loop, name=f"laminar-acks-{topic}", daemon=True)
        self._thread.start()

    def _joined(self, join: pb.ConsumerOp) -> None:
        """Join the group (creating it with the join's settings if needed); learn its lease to pace heartbeats."""
        commit = self._client.consumer_op(pb.GROUP_JOIN, self.topic, join).committed(timeout=JOIN_TIMEOUT_S)
        if not commit.ok:
            self._client.close()
            raise LaminarError(f"joining group {self.name!r} of {self.topic!r} failed: {commit.reason}")
        info = describe_topic(self._addresses, self.topic, tls=self._tls, token=self._token)
        group = next((c for c in info.consumers if c.name == self.name), None)
        lease_ms = group.lease_ms if group is not None else 0
        unacked_max = join.unacked_max or (group.unacked_max if group is not None else 0)
        if unacked_max:
            self._group_flush = max(1, min(self._group_flush, unacked_max // 4))
        lease_ms = lease_ms or join.settings.lease_ms or limits.GROUP_LEASE_MS_MIN
        self._heartbeat_s = lease_ms / 1000 / HEARTBEATS_PER_LEASE

    # ---- the application's thread -------------------------------------------------------------------

    def ack_through(self, offset: int) -> None:
        with self._cond:
            if offset <= self._through:
                return
            self._through = offset
            self._mark_unsent()
            if self._through - self._sent_through >= limits.CONSUMER_ACK_FLUSH_EVENTS:
                self._send()

    def ack_one(self, offset: int) -> None:
        with self._cond:
            self._offsets.append(offset)
            self._mark_unsent()
            if len(self._offsets) >= self._group_flush:
                self._send()

    def flush(self, timeout: float | None = None) -> None:
        """Send what is acknowledged and wait until it is committed."""
        with self._cond:
            self._send()
            last = self._last
        if last is not None:
            self._settle(last, last.committed(timeout))

    def close(self, timeout: float = CLOSE_FLUSH_TIMEOUT_S) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        try:
            self.flush(timeout)
            if self.member is not None:
                op = pb.ConsumerOp(name=self.name, member=self.member)
                self._client.consumer_op(pb.GROUP_LEAVE, self.topic, op).committed(timeout)
        finally:
            self._client.close(timeout=timeout)

    # ---- sending (under the lock) -------------------------------------------------------------------

    def _mark_unsent(self) -> None:
        if self._unsent_since is None:
            self._unsent_since = time.monotonic()
            self._cond.notify_all()

    def _send(self) -> None:
        self._unsent_since = None
        if self.member is None:
            if self._through > self._sent_through:
                self._sent_through = self._through
                self._last = self._client.ack(self.topic, self.name, self._through)
            return
        while self._offsets:
            chunk = self._offsets[: limits.GROUP_ACK_OFFSETS_MAX]
            del self._offsets[: len(chunk)]
            op = pb.ConsumerOp(name=self.name, member=self.member, offsets=chunk)
            self._last = self._client.consumer_op(pb.GROUP_ACK, self.topic, op)

    def _settle(self, pending: Pending, commit: object) -> None:
        effect = getattr(commit, "effect", None)
        reason = getattr(commit, "reason", "")
        if effect == "INVALID" and self.member is not None:
            self.stale_acks += 1
        elif effect == "ERROR":
            self.error = LaminarError(f"acknowledging on {self.topic!r} as {self.name!r} failed: {reason}")
            raise self.error

    # ---- the flusher thread -------------------------------------------------------------------------

    def _loop(self) -> None:
        beat = time.monotonic()
        while True:
            with self._cond:
                wait_s = ACK_FLUSH_S if self._unsent_since is not None else 1.0
                if self._heartbeat_s:
                    wait_s = min(wait_s, max(0.0, beat + self._heartbeat_s - time.monotonic()))
                self._cond.wait(wait_s)
                if self._closed:
                    return
                now = time.monotonic()
                try:
                    if self._unsent_since is not None and now - self._unsent_since >= ACK_FLUSH_S:
                        self._send()
                    if self._heartbeat_s and now - beat >= self._heartbeat_s and self._join is not None:
                        beat = now
                        self._client.consumer_op(pb.GROUP_JOIN, self.topic, self._join)
                except LaminarError as error:  # the client failed for good: flush() and close() report it
                    self.error = error
                    return
