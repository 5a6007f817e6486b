"""gRPC servicers: decode, validate, hand to the log, stream to listeners."""

from laminar.node.service._api import NodeApi
from laminar.node.service._consumers import consumer_infos
from laminar.node.service._listen import EventFeed, ListenService
from laminar.node.service._server import (
    LEADER_METADATA_KEY,
    LaminarServicer,
    build_health,
    build_server,
    set_health,
)
from laminar.node.service._sessions import SessionRouter

__all__ = [
    "LEADER_METADATA_KEY",
    "EventFeed",
    "LaminarServicer",
    "ListenService",
    "NodeApi",
    "SessionRouter",
    "build_health",
    "build_server",
    "consumer_infos",
    "set_health",
]
