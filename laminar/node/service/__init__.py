"""gRPC servicers: decode, validate, hand to the log, stream to listeners (one asyncio gRPC server)."""

from laminar.node.service._api import NodeApi
from laminar.node.service._calls import describe_calls
from laminar.node.service._consumers import consumer_infos
from laminar.node.service._fds import connection_budget, connection_limits, raise_nofile
from laminar.node.service._listen import EventFeed, ListenService
from laminar.node.service._server import (
    LEADER_METADATA_KEY,
    RETRY_AFTER_METADATA_KEY,
    Health,
    LaminarServicer,
    Offload,
    Server,
)
from laminar.node.service._sessions import SessionRouter

__all__ = [
    "LEADER_METADATA_KEY",
    "RETRY_AFTER_METADATA_KEY",
    "EventFeed",
    "Health",
    "LaminarServicer",
    "ListenService",
    "NodeApi",
    "Offload",
    "Server",
    "SessionRouter",
    "connection_budget",
    "connection_limits",
    "consumer_infos",
    "describe_calls",
    "raise_nofile",
]
