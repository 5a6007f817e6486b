"""Addresses, channels and the mapping of gRPC errors to Laminar's exception tree."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from laminar import limits
from laminar.errors import (
    InvalidRequest,
    LaminarError,
    PermissionDenied,
    ProtocolError,
    Unauthenticated,
    Unavailable,
)

DEFAULT_ADDRESSES = ("127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103")
ADDRESSES_ENV = "LAMINAR_ADDRESSES"
TOKEN_ENV = "LAMINAR_TOKEN"  # `<user>:<secret>`, as `laminar user add` prints it
LEADER_METADATA_KEY = "laminar-leader"
# On RESOURCE_EXHAUSTED from a node's own bound (sessions_max, listeners_max, a rate limit): how long it asks
# the client to wait before trying again, in ms (docs/operations.md, "Serving limits").
RETRY_AFTER_METADATA_KEY = "laminar-retry-after-ms"
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", limits.GRPC_MESSAGE_BYTES_MAX),
    ("grpc.max_send_message_length", limits.GRPC_MESSAGE_BYTES_MAX),
    # Reconnect quickly after a node restarts instead of backing off for seconds.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", limits.CLIENT_RECONNECT_BACKOFF_MS_MAX),
    ("grpc.enable_retries", 0),
]


def resolve_addresses(addresses: Sequence[str] | str | None) -> list[str]:
    """Explicit addresses, else $LAMINAR_ADDRESSES (comma-separated), else the local cluster."""
    if addresses is None:
        addresses = os.environ.get(ADDRESSES_ENV) or ",".join(DEFAULT_ADDRESSES)
    if isinstance(addresses, str):
        addresses = [a.strip() for a in addresses.split(",") if a.strip()]
    result = list(addresses)
    if not result:
        raise InvalidRequest("no node addresses given")
    return result


@dataclass(frozen=True)
class TLS:
    """TLS to the nodes' client ports. All PEM bytes; see `TLS.from_files`.

    root_certificates: the CA(s) that signed the nodes' certificates (None: the system's roots);
    certificate_chain and private_key: this client's certificate, for nodes that require one.
    """

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None

    @staticmethod
    def from_files(ca: str | None = None, cert: str | None = None, key: str | None = None) -> TLS:
        def read(path: str | None) -> bytes | None:
            if path is None:
                return None
            try:
                with open(path, "rb") as f:
                    return f.read()
            except OSError as e:
                raise InvalidRequest(f"cannot read {path}: {e}") from e

        return TLS(read(ca), read(cert), read(key))

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.certificate_chain is None) != (self.private_key is None):
            raise InvalidRequest("a client certificate needs both certificate_chain and private_key")
        return grpc.ssl_channel_credentials(self.root_certificates, self.private_key, self.certificate_chain)


class _Token(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `authorization: Bearer <user>:<secret>` to every call of a channel."""

    def __init__(self, token: str) -> None:
        self._metadata = (("authorization", f"Bearer {token}"),)

    def _with_token(self, details: Any) -> Any:
        return details._replace(metadata=tuple(details.metadata or ()) + self._metadata)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._with_token(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._with_token(details), requests)


class Nodes:
    """The cluster's addresses, a channel per address, and where to try next.

    `token` (`<user>:<secret>`; default $LAMINAR_TOKEN) is sent with every call, for clusters with
    authorization on (docs/security.md); with mutual TLS, the client certificate identifies instead."""

    def __init__(self, addresses: Sequence[str] | str | None, tls: TLS | None = None, token: str | None = None) -> None:
        self._credentials = tls.credentials() if tls is not None else None
        token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self._token = _Token(token) if token else None
        self._addresses = resolve_addresses(addresses)
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()
        self._next = 0

    @property
    def addresses(self) -> list[str]:
        return list(self._addresses)

    def channel(self, address: str) -> grpc.Channel:
        with self._lock:
            channel = self._channels.get(address)
            if channel is None:
                if self._credentials is not None:
                    channel = grpc.secure_channel(address, self._credentials, options=CHANNEL_OPTIONS)
                else:
                    channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
                if self._token is not None:
                    channel = grpc.intercept_channel(channel, self._token)
                self._channels[address] = channel
            return channel

    def pick(self, hint: str | None = None) -> str:
        """The hinted address if it is one we may use, else the next one in turn."""
        with self._lock:
            if hint:
                if hint not in self._addresses:
                    self._addresses.append(hint)  # a node we were not told about: the cluster knows it
                return hint
            address = self._addresses[self._next % len(self._addresses)]
            self._next += 1
            return address

    def learn(self, addresses: list[str]) -> None:
        """Add addresses the cluster told us about (membership changes)."""
        with self._lock:
            for address in addresses:
                if address and address not in self._addresses:
                    self._addresses.append(address)

    def refresh(self, timeout_s: float = 1.0) -> None:
        """Learn the current members from the first node that answers a Status call."""
        from laminar.v1 import laminar_pb2 as pb

        for address in self.addresses:
            method = self.channel(address).unary_unary(
                "/laminar.v1.Laminar/Status",
                request_serializer=pb.StatusRequest.SerializeToString,
                response_deserializer=pb.StatusResponse.FromString,
            )
            try:
                status = method(pb.StatusRequest(), timeout=timeout_s)
            except grpc.RpcError:
                continue
            self.learn([p.client_address for p in status.peers])
            return

    def close(self) -> None:
        with self._lock:
            channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel.close()


def leader_hint(error: grpc.RpcError) -> str | None:
    """The leader's address a follower put in its UNAVAILABLE answer, if any."""
    try:
        metadata = error.trailing_metadata() or ()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - not every RpcError carries metadata
        return None
    for key, value in metadata:
        if key == LEADER_METADATA_KEY and value:
            return str(value)
    return None


def retry_after_s(error: grpc.RpcError) -> float | None:
    """The wait a node asked for when a bound of its refused the call (RESOURCE_EXHAUSTED with
    `laminar-retry-after-ms`), spread by up to a quarter so that clients refused together do not all
    come back together, and never longer than CLIENT_RETRY_HINT_MS_MAX; None for any other error."""
    code = error.code() if hasattr(error, "code") else None  # type: ignore[attr-defined]
    if code != grpc.StatusCode.RESOURCE_EXHAUSTED or is_oversized(error):
        return None
    try:
        metadata = error.trailing_metadata() or ()  # type: ignore[attr-defined]
        hints = [int(value) for key, value in metadata if key == RETRY_AFTER_METADATA_KEY]
    except Exception:  # noqa: BLE001 - no metadata, or a hint that is not a number: no hint
        return None
    if not hints:
        return None
    wait_ms = min(max(0, hints[0]), limits.CLIENT_RETRY_HINT_MS_MAX)
    return wait_ms / 1000 * random.uniform(1.0, 1.25)


def is_oversized(error: grpc.RpcError) -> bool:
    """gRPC's own refusal of a message over a size limit (RESOURCE_EXHAUSTED, "... message larger than
    max ..."), on either side: the same message would be refused again, so it is not retried."""
    code = error.code() if hasattr(error, "code") else None  # type: ignore[attr-defined]
    details = (error.details() if hasattr(error, "details") else "") or ""  # type: ignore[attr-defined]
    return code == grpc.StatusCode.RESOURCE_EXHAUSTED and "message larger than max" in details


def is_fatal(error: grpc.RpcError) -> bool:
    """A session error that a retry of the same frames would meet again (docs/protocol.md). FAILED_PRECONDITION
    is a Hello the leader refused after a read barrier (a client id the cluster forgot, or a nonce ahead of
    what it applied): the same Hello would be refused again. ABORTED is the older of two live sessions of one
    client id: another client shares this one's id, and a retry would only close that client's session in turn."""
    code = error.code() if hasattr(error, "code") else None  # type: ignore[attr-defined]
    fatal = (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
    )
    return code in fatal or is_oversized(error)


def map_error(error: grpc.RpcError) -> LaminarError:
    code = error.code() if hasattr(error, "code") else None  # type: ignore[attr-defined]
    details = error.details() if hasattr(error, "details") else str(error)  # type: ignore[attr-defined]
    refused = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ABORTED)
    if code in refused or is_oversized(error):
        return InvalidRequest(details)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return Unavailable(details)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDenied(details)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return Unauthenticated(details)
    return ProtocolError(f"{code}: {details}")


def call_leader(
    nodes: Nodes,
    rpc: str,
    request: Any,
    response_type: Any,
    timeout_s: float,
    what: str,
    retry_s: float,
    redirect_wait_s: float = 0.0,
) -> Any:
    """One unary call that only the leader serves, following redirects until `timeout_s` passes.

    UNAVAILABLE (not the leader, or no leader yet) is retried: at once at a named leader after
    `redirect_wait_s`, else after `retry_s`; RESOURCE_EXHAUSTED with a retry hint after the hint. Any
    other error is raised, mapped to a LaminarError."""
    deadline = time.monotonic() + timeout_s
    hint: str | None = None
    last_error = "no node answered"
    while time.monotonic() < deadline:
        method = nodes.channel(nodes.pick(hint)).unary_unary(
            f"/laminar.v1.Laminar/{rpc}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_type.FromString,
        )
        try:
            return method(request, timeout=max(0.1, deadline - time.monotonic()))
        except grpc.RpcError as error:
            wait_s = retry_after_s(error)
            if wait_s is not None:  # a bound of the node's: wait as it asks, while time is left
                last_error = error.details() or "resource exhausted"  # type: ignore[attr-defined]
                time.sleep(max(0.0, min(wait_s, deadline - time.monotonic())))
                continue
            if error.code() != grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
                raise map_error(error) from None
            hint = leader_hint(error)
            last_error = error.details() or "unavailable"  # type: ignore[attr-defined]
            time.sleep(retry_s if hint is None else redirect_wait_s)
    raise Unavailable(f"{what} within {timeout_s} s: {last_error}")
