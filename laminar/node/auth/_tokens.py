"""Secrets: how a user's token is stored (salted PBKDF2, never the secret) and checked (constant time).

A caller presents `authorization: Bearer <user>:<secret>`. The secret travels only in that header
and in the USER_ADD request that sets it (use TLS on the client port); the cluster stores and
replicates its salted hash. Nothing here logs a secret, and `Credential.__repr__` hides it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field

from laminar import limits
from laminar.v1 import laminar_pb2 as pb

SALT_BYTES = 16
METADATA_KEY = "authorization"
SCHEME = "bearer "


@dataclass(frozen=True)
class Credential:
    user: str
    secret: str = field(repr=False)


def new_salt() -> bytes:
    return os.urandom(SALT_BYTES)


def hash_secret(secret: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, limits.AUTH_TOKEN_HASH_ITERATIONS)


def verify(user: pb.AuthUser, secret: str) -> bool:
    """Whether `secret` is this user's, compared in constant time. A user without a token never matches."""
    if not user.token_hash:
        hash_secret(secret, b"\0" * SALT_BYTES)  # the same work either way: timing does not tell them apart
        return False
    return hmac.compare_digest(hash_secret(secret, user.token_salt), user.token_hash)


def parse(header: str) -> Credential | None:
    """`Bearer <user>:<secret>` as a credential; None when it is not one (too long, no colon, no scheme)."""
    if len(header) > limits.AUTH_TOKEN_BYTES_MAX + limits.AUTH_NAME_BYTES_MAX + len(SCHEME) + 1:
        return None
    if header[: len(SCHEME)].lower() != SCHEME:
        return None
    user, colon, secret = header[len(SCHEME) :].partition(":")
    if not colon or not user or not secret:
        return None
    return Credential(user, secret)


def header(user: str, secret: str) -> str:
    return f"Bearer {user}:{secret}"
