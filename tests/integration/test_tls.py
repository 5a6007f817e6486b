"""Client-facing TLS: server certificates, optional client certificates, with certificates made here."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import laminar
from laminar.local_cluster import LocalCluster, free_port_block, write_config
from laminar.v1 import laminar_pb2 as pb
from laminar.v1 import laminar_pb2_grpc

READY_TIMEOUT_S = 30.0


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(
    name: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None, ca: bool
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer if issuer is not None else (subject, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1, a client certificate, and a stranger CA."""
    ca_key = _key()
    ca = _certificate("laminar test CA", ca_key, None, ca=True)
    files: dict[str, bytes] = {"ca.pem": ca.public_bytes(serialization.Encoding.PEM)}
    for name in ("server", "client"):
        key = _key()
        files[f"{name}.pem"] = _certificate(name, key, (ca.subject, ca_key), ca=False).public_bytes(
            serialization.Encoding.PEM
        )
        files[f"{name}.key"] = _pem_key(key)
    other_key = _key()
    files["other-ca.pem"] = _certificate("stranger", other_key, None, ca=True).public_bytes(serialization.Encoding.PEM)
    paths = {}
    for name, data in files.items():
        (directory / name).write_bytes(data)
        paths[name] = directory / name
    return paths


def start_tls_cluster(tmp_path: Path, pki: dict[str, Path], client_ca: bool) -> tuple[LocalCluster, list[str]]:
    base = free_port_block(1)
    extra = f'tls_cert = "{pki["server.pem"]}"\ntls_key = "{pki["server.key"]}"'
    if client_ca:
        extra += f'\ntls_client_ca = "{pki["ca.pem"]}"'
    config = tmp_path / "cluster.toml"
    write_config(str(config), 1, base, str(tmp_path / "data"), extra=extra)
    cluster = LocalCluster(str(config), [1], log_dir=str(tmp_path))
    cluster.start_all()
    return cluster, [f"127.0.0.1:{base + 1}"]


def wait_leader(addresses: list[str], tls: laminar.TLS) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if any(s.get("role") == "leader" for s in laminar.cluster_status(addresses, timeout_s=1.0, tls=tls)):
            return
        time.sleep(0.2)
    raise AssertionError("no leader over TLS")


def test_tls_client_port_with_server_certificate(tmp_path: Path) -> None:
    """With tls_cert/tls_key the client port speaks TLS: a client trusting the CA works, plaintext does not."""
    pki = make_pki(tmp_path)
    cluster, addresses = start_tls_cluster(tmp_path, pki, client_ca=False)
    try:
        tls = laminar.TLS.from_files(ca=str(pki["ca.pem"]))
        wait_leader(addresses, tls)
        with laminar.Client(addresses, tls=tls) as client:
            assert client.create_topic("secure").committed(10).ok
            assert client.put("secure", "k", "v").committed(10).ok
            assert client.get("secure", "k").value == b"v"
        with laminar.Listener(addresses, "secure", tls=tls) as listener:
            assert [e.kind for e in listener.take(2, timeout=10)] == ["CREATE_TOPIC", "PUT"]
        with grpc.insecure_channel(addresses[0]) as channel, pytest.raises(grpc.RpcError) as caught:
            laminar_pb2_grpc.LaminarStub(channel).Status(pb.StatusRequest(), timeout=3)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        stranger = laminar.TLS.from_files(ca=str(pki["other-ca.pem"]))
        assert "error" in laminar.cluster_status(addresses, timeout_s=2.0, tls=stranger)[0]
        env = dict(os.environ, LAMINAR_ADDRESSES=addresses[0], LAMINAR_TLS_CA=str(pki["ca.pem"]))
        out = subprocess.run(
            [sys.executable, "-m", "laminar", "status", "--json"], capture_output=True, text=True, env=env, timeout=60
        )
        assert out.returncode == 0 and '"leader"' in out.stdout
    finally:
        cluster.stop_all()


def test_tls_client_certificates_required_when_a_client_ca_is_set(tmp_path: Path) -> None:
    """With tls_client_ca, only clients presenting a certificate signed by that CA get in; with authorization on,
    the certificate's common name is the caller's user name (no token needed), held to that user's grants."""
    pki = make_pki(tmp_path)
    cluster, addresses = start_tls_cluster(tmp_path, pki, client_ca=True)
    try:
        with_cert = laminar.TLS.from_files(str(pki["ca.pem"]), str(pki["client.pem"]), str(pki["client.key"]))
        wait_leader(addresses, with_cert)
        with laminar.Client(addresses, tls=with_cert) as client:
            assert client.create_topic("mtls").committed(10).ok
        without_cert = laminar.TLS.from_files(ca=str(pki["ca.pem"]))
        assert "error" in laminar.cluster_status(addresses, timeout_s=2.0, tls=without_cert)[0]
        _enable_auth_for_the_client_certificate(addresses, with_cert)
        client = laminar.Client(addresses, tls=with_cert)  # CN "client", no token
        assert client.put("mtls", "k", "v").committed(10).ok
        with pytest.raises(laminar.PermissionDenied, match="user 'client' lacks admin on topic 'other'"):
            client.create_topic("other").committed(10)
        with contextlib.suppress(laminar.Unacknowledged):  # the refused create is reported unacknowledged
            client.close()
    finally:
        cluster.stop_all()


def _enable_auth_for_the_client_certificate(addresses: list[str], tls: laminar.TLS) -> None:
    """User `client` (the client certificate's CN) without a token, allowed to write `mtls`; root with a token."""
    from laminar.client import auth_request, grant

    action = pb.AuthRequest.Action
    for request in (
        pb.AuthRequest(action=action.USER_ADD, user="root", token="root-secret"),
        pb.AuthRequest(action=action.USER_GRANT, user="root", role="root"),
        pb.AuthRequest(action=action.USER_ADD, user="client"),
        pb.AuthRequest(action=action.ROLE_ADD, role="mtls-writer"),
        pb.AuthRequest(action=action.ROLE_GRANT, role="mtls-writer", grant=grant("write", "mtls")),
        pb.AuthRequest(action=action.USER_GRANT, user="client", role="mtls-writer"),
        pb.AuthRequest(action=action.ENABLE),
    ):
        auth_request(addresses, request, tls=tls)
