"""`laminar auth|user|role`: turning authorization on, and managing users and roles (docs/security.md).

Like etcd: `auth enable` needs a user `root` holding the role `root` first. `user add` generates a
strong secret unless one is given, and prints the token (`<user>:<secret>`) once: the cluster keeps
only its salted hash.
"""

from __future__ import annotations

import argparse
import secrets
from typing import Any

from laminar._cli import _data
from laminar._cli._exits import CommandFailed, Exit
from laminar._cli._output import print_json, print_table
from laminar.client import auth_request, grant
from laminar.v1 import laminar_pb2 as pb

Action = pb.AuthRequest.Action
TOKEN_SECRET_BYTES = 24  # of randomness in a generated secret (32 URL-safe characters)
PERMISSION_CHOICES = ("read", "write", "admin")


def _send(args: argparse.Namespace, request: pb.AuthRequest) -> dict[str, Any]:
    timeout = float(args.timeout) if args.timeout is not None else 10.0
    return auth_request(args.addresses, request, timeout_s=timeout, tls=_data.tls_of(args))


def _show(args: argparse.Namespace, state: dict[str, Any], what: str) -> int:
    if args.output == "json":
        print_json(state)
        return Exit.OK
    if what in ("users", "all"):
        rows = [[u["name"], ",".join(u.get("roles", []))] for u in state.get("users", [])]
        print_table(["user", "roles"], rows)
    if what in ("roles", "all"):
        rows = []
        for role in state.get("roles", []):
            grants = [_grant_text(g) for g in role.get("grants", [])]
            rows.append([role["name"], ", ".join(grants)])
        print_table(["role", "grants"], rows)
    if what in ("status", "all"):
        print(f"authorization: {'enabled' if state.get('enabled') else 'disabled'}")
    return Exit.OK


def _grant_text(g: dict[str, Any]) -> str:
    permission = str(g.get("permission", "")).removeprefix("PERMISSION_").lower()
    return f"{permission} on the cluster" if g.get("cluster") else f"{permission} on {g.get('pattern', '')}"


def cmd_auth(args: argparse.Namespace) -> int:
    action = {"enable": Action.ENABLE, "disable": Action.DISABLE, "status": Action.LIST}[args.auth_command]
    return _show(args, _send(args, pb.AuthRequest(action=action)), "status")


def cmd_user(args: argparse.Namespace) -> int:
    command = args.user_command
    if command == "list":
        return _show(args, _send(args, pb.AuthRequest(action=Action.LIST)), "users")
    if command == "add":
        secret = args.secret or (None if args.no_token else secrets.token_urlsafe(TOKEN_SECRET_BYTES))
        if secret is not None and ":" in args.name:
            raise CommandFailed(Exit.USAGE, "a user name cannot contain ':'")
        _send(args, pb.AuthRequest(action=Action.USER_ADD, user=args.name, token=secret or ""))
        if secret is not None and not args.secret:
            print(f"{args.name}:{secret}")  # the token, shown once: pass it as --token or $LAMINAR_TOKEN
        return Exit.OK
    action = {"remove": Action.USER_REMOVE, "grant": Action.USER_GRANT, "revoke": Action.USER_REVOKE}[command]
    state = _send(args, pb.AuthRequest(action=action, user=args.name, role=getattr(args, "role", "")))
    return _show(args, state, "users")


def cmd_role(args: argparse.Namespace) -> int:
    command = args.role_command
    if command == "list":
        return _show(args, _send(args, pb.AuthRequest(action=Action.LIST)), "roles")
    if command in ("add", "remove"):
        action = Action.ROLE_ADD if command == "add" else Action.ROLE_REMOVE
        return _show(args, _send(args, pb.AuthRequest(action=action, role=args.name)), "roles")
    if (args.pattern is None) == (not args.cluster):
        raise CommandFailed(Exit.USAGE, "give a topic pattern (`orders`, `orders.*`, `*`) or --cluster, not both")
    action = Action.ROLE_GRANT if command == "grant" else Action.ROLE_REVOKE
    request = pb.AuthRequest(
        action=action, role=args.name, grant=grant(args.permission, args.pattern or "", cluster=args.cluster)
    )
    return _show(args, _send(args, request), "roles")


def add_parsers(sub: Any, make: Any) -> None:
    """`make(parent, name, help, func, output=...)` is cli._sub."""
    auth = make(sub, "auth", "turn authorization on or off, or show whether it is on", client=False)
    auth_sub = auth.add_subparsers(dest="auth_command", required=True, metavar="{enable,disable,status}")
    make(auth_sub, "enable", "require identities and permissions (needs user root, role root)", cmd_auth, output=True)
    make(auth_sub, "disable", "let every caller do everything again", cmd_auth, output=True)
    make(auth_sub, "status", "whether authorization is on", cmd_auth, output=True)

    user = make(sub, "user", "add, remove, grant roles to or list users", client=False)
    user_sub = user.add_subparsers(dest="user_command", required=True, metavar="{add,remove,grant,revoke,list}")
    add = make(user_sub, "add", "add a user; prints its token (<user>:<secret>) once", cmd_user, output=True)
    add.add_argument("name")
    add.add_argument("--secret", help="use this secret instead of a generated one (8 characters at least)")
    add.add_argument("--no-token", action="store_true", help="no token: the user signs in by client certificate")
    remove = make(user_sub, "remove", "remove a user (its sessions and listeners close)", cmd_user, output=True)
    remove.add_argument("name")
    for name, text in (("grant", "give a user a role"), ("revoke", "take a role from a user")):
        parser = make(user_sub, name, text, cmd_user, output=True)
        parser.add_argument("name")
        parser.add_argument("role")
    make(user_sub, "list", "every user and its roles", cmd_user, output=True)

    role = make(sub, "role", "add, remove, grant permissions to or list roles", client=False)
    role_sub = role.add_subparsers(dest="role_command", required=True, metavar="{add,remove,grant,revoke,list}")
    for name, text in (("add", "add a role"), ("remove", "remove a role (users lose it)")):
        make(role_sub, name, text, cmd_role, output=True).add_argument("name")
    for name, text in (("grant", "grant a role a permission"), ("revoke", "revoke a permission from a role")):
        parser = make(role_sub, name, text, cmd_role, output=True)
        parser.add_argument("name")
        parser.add_argument("permission", choices=PERMISSION_CHOICES)
        parser.add_argument("pattern", nargs="?", help="topic pattern: `orders`, `orders.*` (prefix) or `*`")
        parser.add_argument("--cluster", action="store_true", help="on the cluster: membership, users, roles, digest")
    make(role_sub, "list", "every role and its grants", cmd_role, output=True)
