"""Who may do what: identities, roles and permissions (docs/security.md).

The pure parts (the permission model, token hashing, the failure throttle) need nothing but the
generated protobuf code; `Gate` applies them to gRPC calls, as a server interceptor.
"""

from laminar.node.auth._gate import AuthInterceptor, Gate
from laminar.node.auth._model import (
    ROOT,
    AuthState,
    allowed,
    apply_change,
    describe,
    grant_problem,
    grant_text,
    name_problem,
    permission_of,
)
from laminar.node.auth._throttle import Throttle
from laminar.node.auth._tokens import Credential, hash_secret, header, new_salt, parse, verify

__all__ = [
    "ROOT",
    "AuthInterceptor",
    "AuthState",
    "Credential",
    "Gate",
    "Throttle",
    "allowed",
    "apply_change",
    "describe",
    "grant_problem",
    "grant_text",
    "hash_secret",
    "header",
    "name_problem",
    "new_salt",
    "parse",
    "permission_of",
    "verify",
]
