"""Find the nodes that answer, all at once and within a deadline, before a command waits on them.

The client library retries for as long as it is allowed to (a cluster may be electing a leader);
a person at a terminal wants to know within seconds that nothing is there, which addresses were
tried, and how to start a cluster. One Status call to every address in parallel tells both.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc

from laminar._cli._exits import CommandFailed, Exit
from laminar.client import TLS, resolve_addresses
from laminar.v1 import laminar_pb2 as pb

HOW_TO_START = (
    "Start a local cluster with `make cluster` in the Laminar repository (or "
    "`laminar cluster run --config cluster/local-3.toml`), or name your nodes with "
    "--addresses host:port,... or LAMINAR_ADDRESSES."
)


class Deadline:
    """The time a command has left (its --timeout, counted from the start)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self._end - time.monotonic())


@dataclass
class Probe:
    """Each address's Status answer, or why it gave none."""

    addresses: list[str]
    source: str = "the given addresses"  # where the addresses came from, for messages
    answers: dict[str, pb.StatusResponse] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def leader_address(self) -> str | None:
        for status in self.answers.values():
            if status.role == "leader":
                return next((a for a, s in self.answers.items() if s is status), None)
        return next((s.leader_address for s in self.answers.values() if s.leader_address), None)

    def ordered(self) -> list[str]:
        """The leader first, then nodes that answered, then the rest: the client tries them in order."""
        leader = self.leader_address()
        first = [leader] if leader else []
        rest = [a for a in self.addresses if a in self.answers and a not in first]
        return first + rest + [a for a in self.addresses if a not in first and a not in rest]

    def unreachable_message(self, timeout_s: float) -> str:
        lines = [f"no Laminar node answered (waited up to {timeout_s:g} s); tried {self.source}:"]
        lines += [f"  {address}: {self.errors.get(address, 'no answer')}" for address in self.addresses]
        return "\n".join([*lines, HOW_TO_START])

    def no_leader_message(self, what: str, timeout_s: float) -> str:
        up = ", ".join(f"{a} ({s.role})" for a, s in self.answers.items()) or "none"
        down = ", ".join(self.errors) or "none"
        return (
            f"no leader took the {what} within {timeout_s:g} s: the cluster is electing a leader or has "
            f"lost its quorum. Nodes that answered: {up}; not answering: {down}. "
            "`laminar status` shows each member; retry with a longer --timeout to wait for an election."
        )


def address_source(flag: str | None) -> str:
    if flag:
        return "--addresses"
    if os.environ.get("LAMINAR_ADDRESSES"):
        return "LAMINAR_ADDRESSES"
    return "the default local cluster"


def probe(addresses: Sequence[str] | str | None, tls: TLS | None, timeout_s: float) -> Probe:
    """Ask every address for its Status in parallel; wait `timeout_s` at most."""
    resolved = resolve_addresses(addresses)
    result = Probe(resolved)
    channels = [_channel(address, tls) for address in resolved]
    try:
        calls = []
        for address, channel in zip(resolved, channels, strict=True):
            method = channel.unary_unary(
                "/laminar.v1.Laminar/Status",
                request_serializer=pb.StatusRequest.SerializeToString,
                response_deserializer=pb.StatusResponse.FromString,
            )
            calls.append((address, method.future(pb.StatusRequest(), timeout=max(0.01, timeout_s))))
        for address, call in calls:
            try:
                result.answers[address] = call.result()
            except grpc.RpcError as error:
                result.errors[address] = _describe(error)
    finally:
        for channel in channels:
            channel.close()
    return result


def require_answer(addresses: str | None, tls: TLS | None, timeout_s: float) -> Probe:
    """The probe, or CommandFailed(UNAVAILABLE) naming every address tried and how to start a cluster."""
    found = probe(addresses, tls, timeout_s)
    found.source = address_source(addresses)
    if not found.answers:
        raise CommandFailed(Exit.UNAVAILABLE, found.unreachable_message(timeout_s))
    return found


def _channel(address: str, tls: TLS | None) -> grpc.Channel:
    if tls is not None:
        return grpc.secure_channel(address, tls.credentials())
    return grpc.insecure_channel(address)


def _describe(error: grpc.RpcError) -> str:
    code = error.code() if hasattr(error, "code") else None  # type: ignore[attr-defined]
    details = error.details() if hasattr(error, "details") else str(error)  # type: ignore[attr-defined]
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"no answer in time ({details})"
    return details or str(code)
