"""The attacks of the hostile-client suite (bench/hostile.py), one per class of issue 15.

Run as a child process, one attack at a time: `python -m bench.hostile_attacks NAME --addresses ...`.
It prints `START` when the attack proper begins (after any preparation, such as filling the store),
`NOTE <text>` lines with what it saw, `FAIL <text>` for a target of its own it missed (a foreign
outcome, an unclear status), and `END` when it is done; the parent measures the well-behaved
client between START and END and ends this process by its pid if it overruns. Every loop here is
bounded twice: by a count (which --scale sets) and by the deadline (--seconds after START).
Loopback only: the addresses are those of a cluster the parent started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import socket
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
import grpc.aio

import laminar
from laminar.v1 import laminar_pb2 as pb

SERVICE = "/laminar.v1.Laminar/"
RPC_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 2.0
PREPARATION_S_MAX = 300.0  # filling the store for the Digest flood is the longest


@dataclass(frozen=True)
class Scale:
    """How much of each attack: the issue's figures for `full`, a sample for `short`."""

    idle_sessions: int
    silent_listeners: int
    listener_bulk_bytes: int
    digest_store_events: int
    digest_callers: int
    silent_tcp_connections: int
    big_frame_sessions: int
    big_frame_bytes: int
    slow_readers: int
    slow_reader_frames: int
    vanishing_clients: int
    topic_cycles: int
    shared_id_puts: int
    garbage_calls: int


SCALES = {
    "full": Scale(
        idle_sessions=2000,
        silent_listeners=2000,
        listener_bulk_bytes=50 * 2**20,
        digest_store_events=300_000,
        digest_callers=50,
        silent_tcp_connections=19_000,
        big_frame_sessions=8,
        big_frame_bytes=300 * 2**20,
        slow_readers=32,
        slow_reader_frames=400,
        vanishing_clients=10_000,
        topic_cycles=38_000,
        shared_id_puts=300,
        garbage_calls=2000,
    ),
    "short": Scale(
        idle_sessions=100,
        silent_listeners=100,
        listener_bulk_bytes=4 * 2**20,
        digest_store_events=10_000,
        digest_callers=8,
        silent_tcp_connections=500,
        big_frame_sessions=2,
        big_frame_bytes=24 * 2**20,
        slow_readers=4,
        slow_reader_frames=40,
        vanishing_clients=150,
        topic_cycles=1000,
        shared_id_puts=60,
        garbage_calls=200,
    ),
}


@dataclass
class Target:
    addresses: list[str]
    leader: str
    follower: str
    scale: Scale
    seconds: float  # how long the attack runs once it starts
    # time.monotonic() by which the attack stops: generous during preparation, moved by start()
    deadline: float = float("inf")

    def start(self) -> None:
        """The attack proper begins now (its preparation is over): the parent measures from here."""
        self.deadline = time.monotonic() + self.seconds
        say("START")

    def left_s(self) -> float:
        return self.deadline - time.monotonic()

    def running(self) -> bool:
        return time.monotonic() < self.deadline


def say(line: str) -> None:
    print(line, flush=True)


def identity(data: bytes) -> bytes:
    return data


def hello(client_id: bytes | None = None, next_nonce: int = 1) -> bytes:
    frame = pb.ClientFrame(hello=pb.Hello(client_id=client_id or uuid.uuid4().bytes, next_nonce=next_nonce))
    return frame.SerializeToString()


def puts(first_nonce: int, count: int, topic: str, value: bytes, key: bytes = b"k") -> bytes:
    mutations = [
        pb.Mutation(nonce=first_nonce + i, kind=pb.PUT, topic=topic, key=key, value=value) for i in range(count)
    ]
    return pb.ClientFrame(mutations=pb.MutationFrame(mutations=mutations)).SerializeToString()


def session(channel: grpc.aio.Channel) -> grpc.aio.StreamStreamCall:
    method = channel.stream_stream(SERVICE + "Session", request_serializer=identity, response_deserializer=identity)
    return method()


def channels(address: str, count: int) -> list[grpc.aio.Channel]:
    # Big receive limits: the attacker must not be the one that refuses frames.
    options = [("grpc.max_receive_message_length", 64 * 2**20), ("grpc.max_send_message_length", 64 * 2**20)]
    return [grpc.aio.insecure_channel(address, options=[*options, ("grpc.channel_id", n)]) for n in range(count)]


async def close_all(chans: list[grpc.aio.Channel]) -> None:
    for channel in chans:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(channel.close(grace=None), 5)


def make_topic(addresses: list[str], name: str) -> None:
    with laminar.Client(addresses) as client:
        client.create_topic(name).committed(timeout=RPC_TIMEOUT_S)


async def until_deadline(target: Target) -> None:
    while target.running():
        await asyncio.sleep(min(0.2, max(0.0, target.left_s())))


# ---- the attacks -----------------------------------------------------------------------------


async def idle_sessions(target: Target) -> None:
    """Sessions that send a Hello and then nothing, held open."""
    count = target.scale.idle_sessions
    chans = channels(target.leader, max(1, count // 100))
    calls = []
    target.start()
    for n in range(count):
        if not target.running():
            break
        call = session(chans[n % len(chans)])
        calls.append(call)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(call.write(hello()), 1.0)
    say(f"NOTE opened {len(calls)} idle sessions")
    await until_deadline(target)
    ended = sum(1 for call in calls if call.done())
    say(f"NOTE {ended} of {len(calls)} idle sessions ended by the node before the attack's end")
    for call in calls:
        call.cancel()
    await close_all(chans)


async def silent_listeners(target: Target) -> None:
    """Listen streams that never read, while megabytes are written to their topic."""
    scale = target.scale
    await asyncio.to_thread(make_topic, target.addresses, "bulk")
    chans = channels(target.leader, max(1, scale.silent_listeners // 100))
    request = pb.ListenRequest(topic="bulk", from_offset=0).SerializeToString()
    calls = []
    target.start()
    for n in range(scale.silent_listeners):
        if not target.running():
            break
        method = chans[n % len(chans)].unary_stream(
            SERVICE + "Listen", request_serializer=identity, response_deserializer=identity
        )
        calls.append(method(request))
    written = await asyncio.to_thread(_write_bulk, target, "bulk", scale.listener_bulk_bytes)
    say(f"NOTE {len(calls)} listeners that never read; {written / 2**20:.0f} MiB written to their topic")
    await until_deadline(target)
    for call in calls:
        call.cancel()
    await close_all(chans)


def _write_bulk(target: Target, topic: str, total_bytes: int, value_bytes: int = 64 * 1024) -> int:
    written = 0
    value = os.urandom(value_bytes)
    with laminar.Client(target.addresses, inflight_max=64) as client:
        last = None
        while written < total_bytes and target.running():
            last = client.put(topic, b"bulk-%d" % written, value)
            written += value_bytes
        if last is not None:
            with contextlib.suppress(laminar.LaminarError):
                last.committed(timeout=max(1.0, target.left_s()))
    return written


async def digest_status_flood(target: Target) -> None:
    """Many concurrent Digest calls and a Status loop on every node, over a large store."""
    scale = target.scale
    await asyncio.to_thread(_fill_store, target.addresses, scale.digest_store_events)
    chans = [grpc.aio.insecure_channel(a) for a in target.addresses]
    digest = [
        c.unary_unary(SERVICE + "Digest", request_serializer=identity, response_deserializer=identity) for c in chans
    ]
    status = [
        c.unary_unary(SERVICE + "Status", request_serializer=identity, response_deserializer=identity) for c in chans
    ]
    calls = {"Digest": 0, "Status": 0, "refused": 0}

    async def loop(method: Callable[..., Awaitable[bytes]], name: str) -> None:
        while target.running():
            try:
                await method(b"", timeout=max(0.1, target.left_s()))
                calls[name] += 1
            except grpc.aio.AioRpcError as e:
                calls["refused"] += 1
                if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    await asyncio.sleep(0.05)

    target.start()
    tasks = [asyncio.create_task(loop(digest[n % len(digest)], "Digest")) for n in range(scale.digest_callers)]
    tasks += [asyncio.create_task(loop(s, "Status")) for s in status]
    await asyncio.gather(*tasks, return_exceptions=True)
    say(f"NOTE {scale.digest_store_events:,} events stored; answered {calls}")
    await close_all(chans)


def _fill_store(addresses: list[str], events: int) -> None:
    value = b"v" * 100
    with laminar.Client(addresses) as client:
        client.create_topic("big").committed(timeout=RPC_TIMEOUT_S)
        last = None
        for n in range(events):
            last = client.put("big", b"k%d" % (n % 50_000), value)
        assert last is not None
        last.committed(timeout=300)


async def silent_tcp(target: Target) -> None:
    """Plain TCP connections to a follower's client port that never send a byte, up to many fds."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    count = min(target.scale.silent_tcp_connections, hard - 200)
    host, port = target.follower.rsplit(":", 1)
    target.start()
    sockets = await asyncio.to_thread(_open_sockets, host, int(port), count, target)
    say(f"NOTE held {len(sockets)} silent TCP connections to the follower {target.follower} (fd limit {hard})")
    await until_deadline(target)
    for s in sockets:
        s.close()


def _open_sockets(host: str, port: int, count: int, target: Target) -> list[socket.socket]:
    sockets: list[socket.socket] = []
    failures = 0
    while len(sockets) < count and failures < 50 and target.running():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(CONNECT_TIMEOUT_S)
        try:
            s.connect((host, port))
        except OSError:
            s.close()
            failures += 1
            continue
        sockets.append(s)
    return sockets


async def big_frames(target: Target) -> None:
    """Sessions pushing 3 MiB frames (three 1 MiB puts) as fast as the transport takes them."""
    scale = target.scale
    await asyncio.to_thread(make_topic, target.addresses, "big-frames")
    chans = channels(target.leader, scale.big_frame_sessions)
    per_session = scale.big_frame_bytes // scale.big_frame_sessions
    sent = [0] * scale.big_frame_sessions
    value = os.urandom(2**20 - 64)

    async def push(n: int) -> None:
        call = session(chans[n])
        drain = asyncio.create_task(_drain(call))
        try:
            await call.write(hello())
            nonce = 1
            while sent[n] < per_session and target.running():
                await asyncio.wait_for(call.write(puts(nonce, 3, "big-frames", value)), max(0.1, target.left_s()))
                nonce += 3
                sent[n] += 3 * len(value)
        except (TimeoutError, grpc.aio.AioRpcError, grpc.aio.UsageError):
            pass
        finally:
            call.cancel()
            drain.cancel()

    target.start()
    await asyncio.gather(*(push(n) for n in range(scale.big_frame_sessions)), return_exceptions=True)
    say(f"NOTE {scale.big_frame_sessions} sessions sent {sum(sent) / 2**20:.0f} MiB in 3 MiB frames")
    await until_deadline(target)
    await close_all(chans)


async def _drain(call: grpc.aio.StreamStreamCall) -> None:
    with contextlib.suppress(Exception):
        async for _ in call:
            pass


async def slow_ack_readers(target: Target) -> None:
    """Sessions that send puts steadily but read their acks once a second."""
    scale = target.scale
    await asyncio.to_thread(make_topic, target.addresses, "slow-readers")
    chans = channels(target.leader, scale.slow_readers)
    value = os.urandom(1024)
    frames_sent = [0] * scale.slow_readers

    async def run(n: int) -> None:
        call = session(chans[n])
        reader = asyncio.create_task(_read_slowly(call, target))
        try:
            await call.write(hello())
            nonce = 1
            while frames_sent[n] < scale.slow_reader_frames and target.running():
                await asyncio.wait_for(call.write(puts(nonce, 256, "slow-readers", value)), max(0.1, target.left_s()))
                nonce += 256
                frames_sent[n] += 1
        except (TimeoutError, grpc.aio.AioRpcError, grpc.aio.UsageError):
            pass
        await until_deadline(target)
        call.cancel()
        reader.cancel()

    target.start()
    await asyncio.gather(*(run(n) for n in range(scale.slow_readers)), return_exceptions=True)
    say(f"NOTE {scale.slow_readers} slow readers sent {sum(frames_sent)} frames of 256 x 1 KiB puts")
    await close_all(chans)


async def _read_slowly(call: grpc.aio.StreamStreamCall, target: Target) -> None:
    with contextlib.suppress(Exception):
        while target.running():
            await call.read()
            await asyncio.sleep(1.0)


async def vanishing_clients(target: Target) -> None:
    """Many client ids that each put once, see it commit, and never come back."""
    scale = target.scale
    await asyncio.to_thread(make_topic, target.addresses, "vanish")
    keys_before = await _store_keys(target.follower)
    chans = channels(target.leader, 16)
    done = [0, 0]  # committed, failed
    gate = asyncio.Semaphore(64)
    frame = puts(1, 1, "vanish", b"once")

    async def one(n: int) -> None:
        async with gate:
            if not target.running():
                return
            call = session(chans[n % len(chans)])
            try:
                await call.write(hello())
                await call.write(frame)
                while True:
                    reply = pb.ServerFrame.FromString(await asyncio.wait_for(call.read(), max(0.1, target.left_s())))
                    if reply.HasField("acks") and reply.acks.commits:
                        done[0] += 1
                        return
            except Exception:  # noqa: BLE001 - any failure counts as one
                done[1] += 1
            finally:
                call.cancel()

    target.start()
    await asyncio.gather(*(one(n) for n in range(scale.vanishing_clients)), return_exceptions=True)
    await asyncio.sleep(1.0)
    keys_after = await _store_keys(target.follower)
    growth = keys_after - keys_before
    say(f"NOTE {done[0]} one-put clients committed ({done[1]} failed); store keys +{growth:,}")
    await until_deadline(target)
    await close_all(chans)


async def _store_keys(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        method = channel.unary_unary(
            SERVICE + "Digest", request_serializer=identity, response_deserializer=pb.DigestResponse.FromString
        )
        try:
            return int((await method(b"", timeout=30)).keys)
        except grpc.aio.AioRpcError:
            return -1


async def topic_churn(target: Target) -> None:
    """Create and destroy distinct topics as fast as the log takes them, pipelined."""
    cycles = target.scale.topic_cycles
    keys_before = await _store_keys(target.follower)
    chans = channels(target.leader, 1)
    call = session(chans[0])
    drain = asyncio.create_task(_drain(call))
    done = 0
    target.start()
    try:
        await call.write(hello())
        nonce = 1
        per_frame = 250
        while done < cycles and target.running():
            mutations = []
            for i in range(done, min(cycles, done + per_frame)):
                mutations.append(pb.Mutation(nonce=nonce, kind=pb.CREATE_TOPIC, topic=f"churn-{i}"))
                mutations.append(pb.Mutation(nonce=nonce + 1, kind=pb.DESTROY_TOPIC, topic=f"churn-{i}"))
                nonce += 2
            frame = pb.ClientFrame(mutations=pb.MutationFrame(mutations=mutations)).SerializeToString()
            await asyncio.wait_for(call.write(frame), max(0.1, target.left_s()))
            done += len(mutations) // 2
    except (TimeoutError, grpc.aio.AioRpcError, grpc.aio.UsageError) as e:
        say(f"NOTE the churn session ended: {type(e).__name__}")
    await asyncio.sleep(2.0)
    keys_after = await _store_keys(target.follower)
    growth = keys_after - keys_before
    say(f"NOTE {done:,} create+destroy cycles sent; store keys +{growth:,}")
    await until_deadline(target)
    call.cancel()
    drain.cancel()
    await close_all(chans)


async def shared_client_id(target: Target) -> None:
    """Two clients that share one client id, each putting its own keys; every VALID ack is checked
    against the topic: the event at its intention offset must be that client's own put."""
    await asyncio.to_thread(make_topic, target.addresses, "shared")
    target.start()
    result = await asyncio.to_thread(_shared_id_run, target)
    say(f"NOTE {result[0]}")
    if result[1]:
        say(f"FAIL {result[1]} writes acknowledged VALID are not in the topic as acknowledged")
    await until_deadline(target)


def _shared_id_run(target: Target) -> tuple[str, int]:
    client_id = uuid.uuid4()
    acked: list[tuple[int, bytes, bytes]] = []  # (intention offset, key, value) of each put acknowledged VALID
    errors: list[str] = []
    lock = threading.Lock()

    def writer(who: str) -> None:
        try:
            with laminar.Client(target.addresses, client_id=client_id, close_timeout=5) as client:
                pendings = []
                for n in range(target.scale.shared_id_puts):
                    key, value = f"{who}-{n}".encode(), f"from {who} #{n}".encode()
                    pendings.append((key, value, client.put("shared", key, value)))
                    time.sleep(0.002)
                for key, value, pending in pendings:
                    try:
                        commit = pending.committed(timeout=max(1.0, target.left_s()))
                    except laminar.LaminarError as e:
                        with lock:
                            errors.append(type(e).__name__)
                        continue
                    if commit.ok:
                        with lock:
                            acked.append((commit.intention_offset, key, value))
        except laminar.LaminarError as e:
            with lock:
                errors.append(type(e).__name__)

    threads = [threading.Thread(target=writer, args=(who,)) for who in ("A", "B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, target.left_s()))
    foreign = _foreign_acks(target.addresses, "shared", acked)
    summary = f"{len(acked)} puts acknowledged VALID, {foreign} of them not in the topic as acknowledged"
    return f"{summary}; {len(errors)} refused ({', '.join(sorted(set(errors))) or 'none'})", foreign


def _foreign_acks(addresses: list[str], topic: str, acked: list[tuple[int, bytes, bytes]]) -> int:
    """How many acknowledged (key, value) pairs are not the event at their intention offset."""
    if not acked:
        return 0
    seen: dict[int, tuple[bytes, bytes]] = {}
    last = max(offset for offset, _, _ in acked)
    with laminar.Listener(addresses, topic) as listener:
        while True:
            try:
                event = listener.next_event(timeout=5)
            except laminar.LaminarError:
                break
            seen[event.intention_offset] = (event.key, event.value)
            if event.intention_offset >= last:
                break
    return sum(1 for offset, key, value in acked if seen.get(offset) != (key, value))


async def garbage(target: Target) -> None:
    """Bad protobuf to every RPC, and raw TCP garbage to every node."""
    methods = ["Session", "Listen", "Get", "Status", "DescribeTopic", "Digest", "ChangeMembership", "InjectFault"]
    chans = [grpc.aio.insecure_channel(a) for a in target.addresses]
    junk = os.urandom(4096)
    codes: dict[str, int] = {}
    details: dict[str, str] = {}  # a sample status message per unclear code
    sync_channels = [grpc.insecure_channel(a) for a in target.addresses]
    gate = asyncio.Semaphore(32)

    async def call(n: int) -> None:
        async with gate:
            name = methods[n % len(methods)]
            channel = chans[n % len(chans)]
            body = junk[: 1 + (n * 131) % len(junk)]
            try:
                if name == "Session":
                    # A plain (threaded) call: grpc.aio reports a write after the node ended the stream as its
                    # own INTERNAL ("Internal error from Core"), which would hide the node's status.
                    status, message = await asyncio.to_thread(
                        _sync_session, sync_channels[n % len(sync_channels)], body
                    )
                    codes[f"{name}:{status.name}"] = codes.get(f"{name}:{status.name}", 0) + 1
                    if status in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL):
                        details.setdefault(f"{name}:{status.name}", message[:200])
                    return
                elif name == "Listen":
                    listen = channel.unary_stream(
                        SERVICE + name, request_serializer=identity, response_deserializer=identity
                    )
                    async for _ in listen(body, timeout=2):
                        break
                else:
                    unary = channel.unary_unary(
                        SERVICE + name, request_serializer=identity, response_deserializer=identity
                    )
                    await unary(body, timeout=5)
                code = "OK"
            except grpc.aio.AioRpcError as e:
                code = e.code().name
                if code in ("UNKNOWN", "INTERNAL"):
                    details.setdefault(f"{name}:{code}", (e.details() or "")[:200])
            except TimeoutError:
                code = "client timeout"
            codes[f"{name}:{code}"] = codes.get(f"{name}:{code}", 0) + 1

    target.start()
    await asyncio.gather(*(call(n) for n in range(target.scale.garbage_calls)), return_exceptions=True)
    sent = await asyncio.to_thread(_tcp_garbage, target, target.scale.garbage_calls)
    unknown = {k: v for k, v in codes.items() if k.endswith(":UNKNOWN") or k.endswith(":INTERNAL")}
    by_code: dict[str, int] = {}
    for key, count in codes.items():
        code = key.split(":", 1)[1]
        by_code[code] = by_code.get(code, 0) + count
    say(f"NOTE {target.scale.garbage_calls} bad-protobuf calls ({by_code}), {sent} raw TCP garbage connections")
    if unknown:
        say(f"FAIL bad protobuf answered UNKNOWN or INTERNAL, not a clear status: {unknown}, e.g. {details}")
    await until_deadline(target)
    await close_all(chans)
    for channel in sync_channels:
        channel.close()


def _sync_session(channel: grpc.Channel, body: bytes) -> tuple[grpc.StatusCode, str]:
    method = channel.stream_stream(SERVICE + "Session", request_serializer=identity, response_deserializer=identity)
    try:
        for _ in method(iter([body]), timeout=5):
            pass
    except grpc.RpcError as e:
        return e.code(), e.details() or ""  # type: ignore[attr-defined]
    return grpc.StatusCode.OK, ""


def _tcp_garbage(target: Target, count: int) -> int:
    sent = 0
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    for n in range(count):
        if not target.running():
            break
        host, port = target.addresses[n % len(target.addresses)].rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S) as s:
                s.sendall((preface if n % 2 else b"") + os.urandom(16 * 1024))
            sent += 1
        except OSError:
            pass
    return sent


async def listen_max_offset(target: Target) -> None:
    """Listen from offset 2^64-1 (and 2^64-2) on every node: a clear status or an idle stream, never UNKNOWN."""
    await asyncio.to_thread(make_topic, target.addresses, "edge")
    target.start()
    seen = []
    for address in target.addresses:
        async with grpc.aio.insecure_channel(address) as channel:
            listen = channel.unary_stream(
                SERVICE + "Listen",
                request_serializer=pb.ListenRequest.SerializeToString,
                response_deserializer=identity,
            )
            for offset in (2**64 - 1, 2**64 - 2):
                try:
                    async for _ in listen(pb.ListenRequest(topic="edge", from_offset=offset), timeout=0.3):
                        break
                    seen.append("OK")
                except grpc.aio.AioRpcError as e:
                    seen.append(e.code().name)
    say(f"NOTE Listen from 2^64-1 and 2^64-2 answered {sorted(set(seen))}")
    if "UNKNOWN" in seen or "INTERNAL" in seen:
        say("FAIL a Listen from the largest offsets was answered UNKNOWN or INTERNAL, not a clear status")
    await until_deadline(target)


ATTACKS: dict[str, Callable[[Target], Awaitable[None]]] = {
    "idle_sessions": idle_sessions,
    "silent_listeners": silent_listeners,
    "digest_status_flood": digest_status_flood,
    "silent_tcp": silent_tcp,
    "big_frames": big_frames,
    "slow_ack_readers": slow_ack_readers,
    "vanishing_clients": vanishing_clients,
    "topic_churn": topic_churn,
    "shared_client_id": shared_client_id,
    "garbage": garbage,
    "listen_max_offset": listen_max_offset,
}


async def _run(name: str, target: Target) -> None:
    target.deadline = time.monotonic() + PREPARATION_S_MAX
    await ATTACKS[name](target)
    say("END")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("attack", choices=sorted(ATTACKS))
    parser.add_argument("--addresses", required=True, help="comma-separated client addresses")
    parser.add_argument("--leader", required=True)
    parser.add_argument("--follower", required=True)
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long the attack runs after START")
    args = parser.parse_args(argv)
    target = Target(args.addresses.split(","), args.leader, args.follower, SCALES[args.scale], args.seconds)
    asyncio.run(_run(args.attack, target))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
