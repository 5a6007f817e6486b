"""The client side: Client, Listener and the values they return. Never imports node code."""

from laminar.client._admin import change_membership, cluster_digests, cluster_status, describe_topic
from laminar.client._auth import auth_request, grant
from laminar.client._calls import CallInfo, CallsInfo, CallStats, describe_calls
from laminar.client._client import Client, Pending
from laminar.client._connect import TLS, TOKEN_ENV, resolve_addresses
from laminar.client._listener import Listener
from laminar.client._types import (
    Commit,
    ConsumerInfo,
    Effect,
    Event,
    GroupSettings,
    Kind,
    Retention,
    TopicInfo,
    Value,
)
from laminar.client._worker import Call, Worker, WorkerStats

__all__ = [
    "TLS",
    "TOKEN_ENV",
    "Call",
    "CallInfo",
    "CallStats",
    "CallsInfo",
    "Client",
    "Commit",
    "ConsumerInfo",
    "Effect",
    "Event",
    "GroupSettings",
    "Kind",
    "Listener",
    "Pending",
    "Retention",
    "TopicInfo",
    "Value",
    "Worker",
    "WorkerStats",
    "auth_request",
    "change_membership",
    "cluster_digests",
    "cluster_status",
    "describe_calls",
    "describe_topic",
    "grant",
    "resolve_addresses",
]
