"""A terminal chat room on Laminar, as the original Laminar shipped: key = user, value = text.

    python examples/chat.py --name alice            # against the local cluster (make cluster)
    python examples/chat.py --name bob --room lobby --addresses 10.0.0.1:7101,10.0.0.2:7101

Each line you type is a PUT of (your name, the line) in the room's topic. A listener prints every
message of the room as it commits. On joining you first see what each member said last: the
listener starts from the topic's current state (a snapshot of its live keys), then follows.
End with Ctrl-D (or end of input when stdin is a pipe): the program waits until your last message
is committed and shown, then leaves.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import laminar

SHOWN_TIMEOUT_S = 10.0
SNAPSHOT_POLL_S = 0.01


class Room:
    def __init__(self, addresses: str | None, room: str, name: str) -> None:
        self.room = room
        self.name = name
        self.client = laminar.Client(addresses)
        self.listener = laminar.Listener(addresses, room, snapshot=True)
        self._shown_offset = 0  # intention offset of the newest event printed (a snapshot's too)
        self._cond = threading.Condition()
        self._printer = threading.Thread(target=self._print_messages, name="chat-printer", daemon=True)

    def join(self) -> None:
        # Your snapshot first, then your messages: one sent before the snapshot was taken would be in it, shown as
        # "(earlier)" and never live. A room that does not exist yet has an empty snapshot (at offset 0).
        deadline = time.monotonic() + SHOWN_TIMEOUT_S
        while self.listener.snapshot_offset is None:
            if time.monotonic() > deadline:
                raise laminar.LaminarError(f"no snapshot of room {self.room!r} within {SHOWN_TIMEOUT_S} s")
            time.sleep(SNAPSHOT_POLL_S)
        commit = self.client.create_topic(self.room).committed(timeout=SHOWN_TIMEOUT_S)
        if commit.effect is laminar.Effect.ERROR:
            raise laminar.LaminarError(f"cannot open room {self.room!r}: {commit.reason}")
        self._printer.start()

    def say(self, text: str) -> laminar.Pending:
        return self.client.put(self.room, self.name, text)

    def leave(self, last: laminar.Pending | None) -> None:
        if last is not None:
            offset = last.committed(timeout=SHOWN_TIMEOUT_S).intention_offset
            with self._cond:
                self._cond.wait_for(lambda: self._shown_offset >= offset, SHOWN_TIMEOUT_S)
        self.listener.close()
        self.client.close()

    def _print_messages(self) -> None:
        try:
            for event in self.listener:
                if event.kind == laminar.Kind.PUT:
                    who, text = event.key.decode(errors="replace"), event.value.decode(errors="replace")
                    prefix = "(earlier) " if event.snapshot else ""
                    print(f"{prefix}{who}: {text}", flush=True)
                elif event.kind == laminar.Kind.DESTROY_TOPIC:
                    print(f"-- room {self.room} was closed", flush=True)
                with self._cond:
                    self._shown_offset = max(self._shown_offset, event.intention_offset)
                    self._cond.notify_all()
        except laminar.LaminarError:
            return  # closed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="your name in the room (the key of your messages)")
    parser.add_argument("--room", default="chat", help="the topic of the room (created if missing)")
    parser.add_argument("--addresses", help="comma-separated node addresses (default: the local cluster)")
    args = parser.parse_args(argv)
    room = Room(args.addresses, args.room, args.name)
    room.join()
    last = None
    try:
        for line in sys.stdin:
            text = line.rstrip("\n")
            if text:
                last = room.say(text)
    except KeyboardInterrupt:
        pass
    room.leave(last)
    return 0


if __name__ == "__main__":
    sys.exit(main())
