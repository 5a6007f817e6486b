"""Every bound in Laminar, in one place, with its unit in its name.

Why one module: a reader who wants to know how much memory a node can use, or why a request was
refused, finds every limit here instead of in the code that enforces it. Input over a bound gets a
clear error (gRPC ``INVALID_ARGUMENT`` / ``RESOURCE_EXHAUSTED``, or an ``ERROR`` effect), never a
crash or a hang. Limits that decide what a committed intention does (program budgets, state sizes,
dedupe windows) are part of the replicated contract: every node must use the same values, so they
are constants, not configuration.
"""

from __future__ import annotations

KIB = 1024
MIB = 1024 * KIB

# --- Names, keys and values (checked by the node before anything reaches the log) ---------------
TOPIC_NAME_BYTES_MAX = 255
TOPIC_NAME_PATTERN = r"[A-Za-z0-9._-]{1,255}"
KEY_BYTES_MAX = 1 * KIB
VALUE_BYTES_MAX = 1 * MIB
PROGRAM_SOURCE_BYTES_MAX = 64 * KIB
PROGRAM_ARGS_BYTES_MAX = 64 * KIB
REASON_BYTES_MAX = 1 * KIB  # reasons longer than this are cut, so a program cannot bloat the store

# --- Wire ----------------------------------------------------------------------------------------
# A frame holds a value, a program and its arguments at most, plus framing: 4 MiB leaves room.
GRPC_MESSAGE_BYTES_MAX = 4 * MIB  # a frame either way; a larger client frame is INVALID_ARGUMENT
# What a node's gRPC transport takes in before it refuses a message itself (with RESOURCE_EXHAUSTED,
# "Received message larger than max"): above the frame limit, so a frame somewhat over it reaches the
# node and gets INVALID_ARGUMENT with the reason, which a client must not retry, where gRPC's own
# RESOURCE_EXHAUSTED reads as "back off, retry". It bounds the memory one stream can make a node buffer.
GRPC_RECEIVE_BYTES_MAX = 2 * GRPC_MESSAGE_BYTES_MAX
FRAME_MUTATIONS_MAX = 4096  # mutations a client packs into one frame
# Commits a node packs into one Acks frame: a Commit with the longest reason still fits 4 MiB this many times.
ACKS_FRAME_COMMITS_MAX = GRPC_MESSAGE_BYTES_MAX // (REASON_BYTES_MAX + 64)
FRAME_BYTES_MAX = 2 * MIB  # a client starts a new frame past this many payload bytes
LISTEN_FRAME_EVENTS_MAX = 1024  # events a node packs into one listener frame
LISTEN_FRAME_BYTES_MAX = 1 * MIB
DESCRIBE_KEYS_COUNTED_MAX = 100_000  # live keys a DescribeTopic answer counts (a bounded scan)

# --- Node ----------------------------------------------------------------------------------------
SESSION_OUTBOX_FRAMES_MAX = 1024  # ack frames queued for one client before its session is cut
PROPOSAL_QUEUE_INTENTIONS_MAX = 65536  # intentions validated and waiting to be proposed
# Bytes of frames validated and waiting to be proposed: sessions wait (gRPC flow control then holds
# the clients) instead of parsing megabytes ahead of the log on threads that share the tick thread's GIL.
PROPOSAL_QUEUE_BYTES_MAX = 16 * MIB
BATCH_INTENTIONS_MAX = 8192  # intentions packed into one Raft log entry
# Payload bytes the proposer packs into one Raft log entry. pysyncobj serializes and sends entries
# in its tick thread, heartbeats included: entries of several MiB made heartbeats late enough for
# followers to elect (8 MiB entries: term 1 -> 115 under 8 sessions of 1 MiB puts). A frame larger
# than this goes alone in its entry, so no entry exceeds RAFT_ENTRY_BYTES_MAX.
BATCH_BYTES_MAX = 1 * MIB
# No Raft log entry is larger: one frame (bounded by gRPC) with its client id and framing.
RAFT_ENTRY_BYTES_MAX = GRPC_MESSAGE_BYTES_MAX + 64 * KIB
# Raft messages larger than this are sent stored, not compressed: pysyncobj compresses each message
# in its tick thread (zlib level 3: ~45 ms per MiB here, once per follower), which delays heartbeats.
RAFT_MESSAGE_COMPRESS_BYTES_MAX = 64 * KIB
# ... and smaller than this, stored too: a reply or a lone append gains nothing from deflate, which costs more per
# message (~29 us to compress, ~20 to inflate, here) than it saves on the wire (_connection.py).
RAFT_MESSAGE_COMPRESS_BYTES_MIN = 1 * KIB
# No Raft message a node accepts is larger, framed or inflated: a batch of entries of up to
# appendEntriesBatchSizeBytes plus the one that crosses it, or a snapshot chunk. Larger closes the link.
RAFT_MESSAGE_BYTES_MAX = 2 * RAFT_ENTRY_BYTES_MAX + 1 * MIB
ENTRIES_INFLIGHT_MAX = 4  # log entries proposed but not yet applied; more waiting means bigger batches
# While an entry is in flight, the next one is proposed only once this much is queued (payload bytes, or
# intentions); less waits for the log to empty (see raft/_proposer.py, "Small entries wait"). A quarter of an
# entry's bounds (RUN_BYTES_MAX, RUN_INTENTIONS_MAX), so pipelined bulk writers keep entries in flight back to back.
PIPELINED_ENTRY_BYTES_MIN = 128 * KIB
PIPELINED_ENTRY_INTENTIONS_MIN = 1024
# What is proposed and not yet applied (stored by the apply thread, not merely queued for it: the engine reports an
# entry done when it is queued, and the apply queue holds up to APPLY_QUEUE_ENTRIES_MAX), over all entries
# (laminar/node/raft/_proposer.py, Applier.when_applied). Entries apply in log
# order, so this is what a frame proposed now waits behind: a small writer's put waits for this much of others' work,
# not for seconds of it, and everything else waits in the per-session queues, where sessions take turns by cost. A
# frame over either bound is proposed alone, once nothing else is in flight. Measured (3 nodes, this 2-core machine):
# 1 MiB of 1 KiB puts is ~20 ms of apply on an idle node, and bounding 1 MiB values to one entry in flight left their
# throughput as it was (~10 MiB/s either way, the machine's CPU is the limit); 8,192 intentions keep two of the
# Python client's largest frames (4,096 small puts) in flight, as before: CPU per message in the pipelined cell
# unchanged (22-23 us across the nodes, main 22-24), where 4,096 (frames cut in two) cost 25-29.
ENTRIES_INFLIGHT_BYTES_MAX = 1 * MIB
ENTRIES_INFLIGHT_INTENTIONS_MAX = 8192  # weighted: a put or a delete is one, see INTENTION_COST_TOPIC
# The light lane (raft/_proposer.py, "The light lane"): a light frame (at most LIGHT_LANE_FRAME_BYTES_MAX payload bytes
# and LIGHT_LANE_FRAME_INTENTIONS_MAX weighted intentions) of a session with nothing in flight is proposed past the
# in-flight bounds above when the log is busy with others' pipelined entries, in an entry of light frames only
# (at most LIGHT_LANE_ENTRY_BYTES_MAX and LIGHT_LANE_ENTRY_INTENTIONS_MAX), and at most ENTRIES_INFLIGHT_LIGHT_LANE_MAX
# such entries in flight: a well-behaved client's put waits behind what is in flight, not also for it to apply first
# (hostile big_frames, slow_ack_readers: 25 ms at the median, 120-230 ms at p99 of the good put's wait was that).
# The frame bounds are those of a light frame on the event loop (FRAME_LIGHT_*, service/_turns.py).
LIGHT_LANE_FRAME_BYTES_MAX = 8 * KIB
LIGHT_LANE_FRAME_INTENTIONS_MAX = 32  # weighted
LIGHT_LANE_ENTRY_BYTES_MAX = 64 * KIB
LIGHT_LANE_ENTRY_INTENTIONS_MAX = 1024  # weighted
# Its entries in flight leave a session light, and the lane holds as many as the Python client keeps frames in flight:
# a light client's next put does not wait for its previous one to apply (raft/_proposer.py, "The light lane").
ENTRIES_INFLIGHT_LIGHT_LANE_MAX = 4
# A shared log: for LIGHT_SESSION_RECENT_MS after a light frame was proposed into a busy log (the light lane's rule),
# entries other than the lane's may hold at most ENTRIES_INFLIGHT_SHARED_BYTES_MAX payload bytes and
# ENTRIES_INFLIGHT_SHARED_INTENTIONS_MAX weighted intentions in flight (a frame over them goes alone, as above): the
# next put of a light client, a moment later, waits behind a quarter of what a bulk writer alone may keep in flight.
LIGHT_SESSION_RECENT_MS = 1000
# A session whose last this many frames taken were all light (each with nothing of it in flight: a client that puts now
# and then and waits for its commits) makes the log shared at each light frame, busy or not, so bulk writers that start
# beside it are paced from their first frame, which also waits for its own cost at ENTRIES_SHARED_BYTES_PER_S_MAX (when
# only a light frame that found the log busy opened the window, the first two 1 MiB puts of hostile big_frames went at
# once, while the leader took in the 8 sessions' first 3 MiB frames, and the good puts of the attack's first 0.2 s
# waited 70-175 ms behind them). Three: a pipelining writer's first frames (a topic create, a warm-up put) are light
# too, and then its frames find it in flight.
LIGHT_SESSION_STREAK_MIN = 3
# ... each of those light frames queued at least this long after its session's previous frame: a client that puts now
# and then. Senders of small frames back to back (a pipelining writer, an open-loop generator) do not count, and their
# light frames do not renew a shared log's window either: when they did, the open loop's two senders (bench.etcd_compare
# --open-loop-fractions 0.1,0.5) made the log shared at each lull and paced each other's larger frames (574 frames held
# by the pace in one run; none in three runs with this rule; at 50 % of the maximum rate commit p99 727 -> 407 ms, the
# medians of 4 alternated pairs at load 6-9). The hostile suite's good client puts every 50 ms; a sequential writer at
# full speed (2-3 ms a put) is not a light client, but its light frames into a busy log still share it.
LIGHT_SESSION_GAP_MS_MIN = 10
ENTRIES_INFLIGHT_SHARED_BYTES_MAX = 256 * KIB
ENTRIES_INFLIGHT_SHARED_INTENTIONS_MAX = 2048  # weighted
# ... and frames over a light frame's bounds (LIGHT_LANE_FRAME_*) are paced: the cost of those an entry takes (payload
# bytes, and weighted intentions at ENTRIES_INFLIGHT_BYTES_MAX / ENTRIES_INFLIGHT_INTENTIONS_MAX bytes each) puts off
# the next such frame by that cost at this rate, over all sessions (the fair queue shares it among them; a bound per
# session would let N bulk writers take N times it), and such a frame waits for its own cost at this rate from when it
# was queued (the first frame of a burst too: see LIGHT_SESSION_STREAK_MIN). Flow control, not refusal: frames held back
# wait in the proposal queue, a session with SESSION_UNCOMMITTED_BYTES_MAX offered is not read, and HTTP/2 then slows
# its sender. The log stays this busy at most while a light client puts (LIGHT_SESSION_RECENT_MS after its last put), so
# bulk writers alone keep their full throughput. Measured (hostile big_frames, 8 sessions pushing 1 MiB puts as fast as
# they may, the good client's commit p99, three alternated pairs on a loaded machine): unpaced 280-719 ms (p50 36-44),
# as the machine (2 cores, 3 nodes, one disk) spent itself on 10+ MiB/s of them: a follower's fsync took 120-150 ms, a 1
# MiB apply 25-55 ms holding the GIL (rocksdict's write keeps it), and every light put waited behind one; paced at 4
# MiB/s, 72-160 (p50 5-6), the rest of the tail in the attack's first 0.3 s (8 sessions' first frames taken in at once).
# Paced at 2 or 8 MiB/s (one to three runs each) it did no better than at 4 within the noise of this machine.
ENTRIES_SHARED_BYTES_PER_S_MAX = 4 * MIB
# A frame over either is proposed in runs of its consecutive nonces within them (one mutation over them alone), and
# an entry holds no more: half the in-flight bounds, so that two fit in flight at once (pipelining) and a small
# writer never waits behind a whole 4 MiB frame.
RUN_BYTES_MAX = min(BATCH_BYTES_MAX, ENTRIES_INFLIGHT_BYTES_MAX // 2)
RUN_INTENTIONS_MAX = ENTRIES_INFLIGHT_INTENTIONS_MAX // 2  # weighted
# A CREATE_TOPIC or DESTROY_TOPIC counts as this many intentions in flight and in its session's share. Measured:
# 25 us of apply against 8 us for a 100-byte put (state machine and store alone), and through a 3-node cluster one
# client's pipelined create/destroy pairs went 3,100 intentions/s against 12,200 puts/s (six alternating rounds).
# Since a destroy of a topic created in the same entry stopped seeking for its views: 14 us against 5 us for a put
# (CPU time of the apply thread, best of 40 entries); 8 instead of 4 (half as many topic ops in flight) did not
# change the hostile topic_churn p99 beyond the spread of runs on a loaded machine (bench/results/hostile.md).
INTENTION_COST_TOPIC = 4
# Topic creates and destroys in flight are also bounded in time: at most what the apply thread, at its measured pace
# (wall time per topic op, a moving average: laminar/node/raft/_pace.py), applies in this long, and a run holds at most
# half of that. Their apply slows 3-6x on a loaded machine (25-35 us quiet, 90-190 us loaded), and a write waits
# behind all of what is in flight: the 2,000 that the weighted bound lets in were 60 ms of apply quiet, 200-400 loaded.
ENTRIES_INFLIGHT_TOPIC_APPLY_MS_MAX = 30
# The pace never cuts the topic ops in flight below this many (smaller entries spend their CPU on per-entry costs,
# ~1 ms each; an entry still goes alone, whatever it holds, when nothing else is in flight).
ENTRIES_INFLIGHT_TOPIC_INTENTIONS_MIN = 64
# Only an entry of at least this many topic ops is a sample of their pace: in a smaller one, the entry's own cost (its
# store commit, the applied mark, waking its clients) is a large part of its apply time.
APPLY_PACE_SAMPLE_INTENTIONS_MIN = 32
RAFT_COMMANDS_QUEUE_MAX = 64  # pysyncobj's own command queue, in log entries
# When the Raft journal is compacted (a store checkpoint becomes the snapshot): see
# laminar/node/raft/_compaction.py. A snapshot archives the whole store, so compacting at a fixed interval
# made the total snapshot work quadratic in the data written; compacting once the applied journal weighs
# RAFT_LOG_BYTES_PER_SNAPSHOT_BYTE times the last snapshot makes it linear (<= (1 + 1/that) x bytes written).
RAFT_LOG_BYTES_PER_SNAPSHOT_BYTE = 1.0  # journal bytes written per byte of the last snapshot before the next
RAFT_LOG_BYTES_MIN = 64 * MIB  # ...but never compact a journal lighter than this (small stores)
# ...and always at this weight, whatever the snapshot's size: the journal is held in memory as well.
RAFT_LOG_BYTES_MAX = 1024 * MIB
# An entry's weight is its record in the file plus Python's memory for it in the journal (a tuple, the
# command's bytes object, its index and end offset: 177 bytes measured with tracemalloc, rounded up).
RAFT_LOG_ENTRY_OVERHEAD_BYTES = 180
# pysyncobj's own rule also compacts past this many entries (raft_log_entries_max in a node's config may
# lower it: tests and the simulator do, so that snapshots and installs of them are frequent). Higher than
# the byte rule ever lets a journal grow (RAFT_LOG_BYTES_MAX / RAFT_LOG_ENTRY_OVERHEAD_BYTES ~ 6 million).
RAFT_LOG_ENTRIES_MAX = 8_000_000
SNAPSHOT_CHUNK_BYTES = 1 * MIB  # a snapshot travels to a lagging follower in chunks of this size
# A snapshot received from the leader larger than this is refused (a hostile or broken peer must not
# fill the disk); far above any store this project targets.
SNAPSHOT_RECEIVED_BYTES_MAX = 64 * 1024 * MIB
# A snapshot file (packed here, or received from the leader) is written back to disk and waited for every
# this many bytes, so the kernel never holds more of it dirty. One fsync of a whole 200 MB snapshot made every
# journal fsync on the same disk wait behind it (250-380 ms each, back to back for 1.2-1.5 s: bench/snapshot_stall.py);
# with at most a step's worth in flight, the journal waits for one step at most (~30 ms at this disk's speed).
SNAPSHOT_SYNC_STEP_BYTES_MAX = 4 * MIB
# A snapshot that is due first has the store's memtable flushed in the background, and waits at most this long
# for it: the checkpoint in the tick thread then flushes only what was applied meanwhile. RocksDB's calls hold the
# GIL (rocksdict), so a checkpoint that flushed a full memtable (up to STORE_WRITE_BUFFER_BYTES) stopped every
# thread of the node for it: 40-260 ms per snapshot under hostile big_frames (bench/_stall_hook.py timings).
SNAPSHOT_FLUSH_AHEAD_S_MAX = 1.0
# RocksDB's memory: its defaults (64 MiB memtables, two of them) let a node grow by ~130 MiB before
# the first flush. Smaller memtables keep RSS flat early and cost little: flushes are sequential.
STORE_WRITE_BUFFER_BYTES = 16 * MIB  # one memtable
STORE_WRITE_BUFFERS_MAX = 2  # memtables in memory at once (one filling, one flushing)
STORE_BLOCK_CACHE_BYTES = 32 * MIB  # cache of read blocks (listeners reading history, gets)
# Apply deletes at most this many stored keys of a range one by one (point tombstones); a larger range gets one
# RocksDB range delete. Why not always a range delete: each one written into the memtable makes the next read
# of any key rebuild the memtable's whole list of range tombstones, so after 20,000 topic destroys (one range
# delete each, for its views) every entry's first read cost ~15 ms. A point tombstone costs only reads of its
# own key, and ~1 us to write: a range of this many keys is at most ~1 ms of apply.
STORE_POINT_DELETES_MAX = 1024
# A read that outlives the store's read lock (a digest, a snapshot listener) reads its pinned snapshot in steps
# of at most this many entries and bytes (one entry always), each under the pin's own lock: a snapshot install,
# which releases every pin, waits for one step at most (well under a millisecond), never for a whole read.
STORE_PIN_STEP_ENTRIES_MAX = 256
STORE_PIN_STEP_BYTES_MAX = 1 * MIB
# Log time (docs/protocol.md, "Log time"): a leader that has proposed nothing for this long proposes a
# time tick, an entry of its clock alone, so that time-based rules (retention by age, leases) act on an
# idle cluster too. Cost while idle: one entry a second (7 payload bytes; with Raft framing, the journal
# fsync on each node and the applied mark's write, well under a millisecond of work per node).
LOG_TIME_TICK_MS = 1000
APPLY_QUEUE_ENTRIES_MAX = 8  # committed entries waiting for the apply thread; the Raft thread waits past this
APPLY_INLINE_BYTES_MAX = 4 * KIB  # a committed entry of one intention, this small, may be applied by the Raft thread

# --- Serving (laminar/node/service/; docs/operations.md, "Serving limits"). One asyncio gRPC server
# serves every stream, so what a stream costs is memory, not a thread: these bound that memory and
# keep one client from taking the node from the others. The *_DEFAULT values an operator may change
# per node in the cluster TOML's [serving] table; the others are fixed.
SESSIONS_MAX_DEFAULT = 4096  # concurrent client sessions per node (RESOURCE_EXHAUSTED past it)
# Sessions whose last finish tag (their place in the proposer's fair queue) is remembered after their queue emptied;
# past it only sessions with frames queued keep theirs, so a stream of one-frame sessions cannot grow the table.
PROPOSER_SESSION_TAGS_MAX = 2 * SESSIONS_MAX_DEFAULT
LISTENERS_MAX_DEFAULT = 4096  # concurrent Listen streams per node (RESOURCE_EXHAUSTED past it)
# TCP connections a node's client port holds at once; past it gRPC closes new ones at accept. Never
# more than the descriptor limit less CONNECTION_FDS_RESERVED (the store, the journal, Raft links).
CONNECTIONS_MAX_DEFAULT = 8192
# Connections past connections_max that gRPC still accepts (an eighth more, at least this many): a call on one of
# them is answered RESOURCE_EXHAUSTED with a retry hint, not closed unanswered. Past those, gRPC closes at accept.
CONNECTIONS_OVER_MAX_ANSWERED_MIN = 16
CONNECTION_RETRY_AFTER_MS = 1000  # the retry hint of a call refused because the node holds connections_max
CONNECTION_FDS_RESERVED = 4096
NOFILE_WANTED = 65536  # the node raises its soft RLIMIT_NOFILE towards this (never past the hard limit)
# A session that has sent nothing for this long and has nothing uncommitted is closed (UNAVAILABLE,
# naming this node as the leader): a client reconnects when it next has something to send.
SESSION_IDLE_S_DEFAULT = 60.0
# A Listen frame or an Acks frame the client has not taken within this long ends its stream with
# RESOURCE_EXHAUSTED: a peer that never reads holds one frame and gRPC's window, then lets go.
STREAM_SEND_STALL_S_DEFAULT = 30.0
# Payload bytes one session may have offered to the log and not yet seen committed; its next frame is
# not read until they commit (gRPC's flow control then holds the client), so one fast sender cannot
# fill the proposal queue that every session shares. One largest frame always fits.
SESSION_UNCOMMITTED_BYTES_MAX = GRPC_MESSAGE_BYTES_MAX
# The same in intentions (frames of tiny mutations): the Python client never has more in flight, so it
# is never held by this; a raw client that pipelines more waits, instead of queueing ahead of everyone.
SESSION_UNCOMMITTED_INTENTIONS_MAX = 16_384  # at least CLIENT_INFLIGHT_MAX (asserted below)
# A session whose client has left an Acks frame untaken this long reads no next frame until it is taken.
SESSION_ACKS_UNTAKEN_HOLD_S = 0.1
# A client frame over either is heavy: the event loop takes in one heavy frame at a time (decode, check each
# mutation, cut into runs: ~1 ms for 256 puts of 1 KiB on a quiet core, several on a loaded machine), and light frames
# never wait for them (service/_turns.py). A light frame costs the loop tens of microseconds: a well-behaved client's.
FRAME_LIGHT_BYTES_MAX = 8 * KIB
FRAME_LIGHT_MUTATIONS_MAX = 32
CONNECTION_HANDSHAKE_TIMEOUT_MS = 10_000  # a TCP connection that has not spoken HTTP/2 by then is closed
CONNECTION_IDLE_MS = 300_000  # a connection with no call for this long is sent GOAWAY (clients reconnect)
CONNECTION_KEEPALIVE_MS = 60_000  # the node pings each connection this often
CONNECTION_KEEPALIVE_TIMEOUT_MS = 20_000  # and closes it when the ping is not answered within this
# Unary calls (Get, Status, DescribeTopic, ChangeMembership) run on a small pool off the event loop;
# past this many running or waiting, a call gets RESOURCE_EXHAUSTED with a retry hint.
UNARY_THREADS = 4
UNARY_CALLS_WAITING_MAX = 256
# Store reads for listeners run on their own small pool, so a listener catching up on megabytes does
# not hold the event loop that every session's acks go through.
LISTEN_READ_THREADS = 2
# The reads the loop's streams ask for in one turn of the loop go to those threads as jobs of at most this many reads,
# each one wake-up of the loop when done (service/_reads.py): 2,000 listeners cancelled at once cost the loop a few
# dozen hand-offs, not thousands. A read is one frame (LISTEN_FRAME_BYTES_MAX at most, within its reservation).
LISTEN_READ_BATCH_MAX = 64
# Listen frames in flight (the one being written and the last one written, which gRPC keeps until it is sent): each
# listener may always have those of LISTEN_FRAME_BYTES_MIN; larger frames share LISTEN_BUFFERED_BYTES_MAX beyond
# that, and shrink as it runs out. A node's listener frames then hold at most listeners_max x 2 x 16 KiB + 64 MiB
# (192 MiB at the defaults), and no listener waits for another's frame to be taken: thousands of clients that never
# read pin small frames each.
LISTEN_BUFFERED_BYTES_MAX = 64 * MIB
LISTEN_FRAME_BYTES_MIN = 16 * KIB
# What every listener's frames together may send per second, by default (the [serving] table's
# listen_bytes_per_s), and in one burst. A client's transport takes in whatever it is sent, read or not, so
# 2,000 "never reading" listeners are 2,000 fast readers: sent all the node could, they took its cores from the
# log (the good client's commit p99 4.1 s). The rate is shared in the order listeners ask.
LISTEN_BYTES_PER_S_DEFAULT = 32 * MIB
LISTEN_BYTES_BURST_MAX = 1 * MIB
# Listeners caught up on their topic wait for one of this many buckets of topics (by name) to get events, not for
# any topic: an entry applied on one topic wakes the listeners of ~1/256 of the others, not all of them.
LISTEN_FEED_BUCKETS = 256
# Listeners woken by news of their bucket in one turn of the event loop; the others wake in the next turns. 2,000
# listeners caught up on an empty topic were all woken by its first event in one turn (a task step each, most of them
# only to queue for the listener rate, which grants 64 frames of 16 KiB per MiB of burst), and the sessions' reads
# and acks waited for that turn.
LISTEN_WAKES_PER_TURN_MAX = 64
# Shared listener bytes freed by a listener whose call ended go to the listeners waiting for room this much later
# (room freed by a frame gRPC took goes at once): when 2,000 never-reading listeners are cancelled at once, the cancels
# come in over a few hundred ms, and the room of each went at once to waiters whose own cancel was on its way, each
# reading and writing a frame for nothing while a good client's put waited for the event loop.
LISTEN_ENDED_ROOM_DELAY_S = 0.5
# Digest reads the whole store: one at a time per node, and a new one starts only after as long a pause
# as the previous one took (half a core at most); callers past that get RESOURCE_EXHAUSTED with a hint.
DIGEST_CALLS_CONCURRENT_MAX = 1
DIGEST_PAUSE_FACTOR = 3  # the pause after a Digest, in times its duration: a quarter of a thread at most
# Status (every live topic's name), DescribeTopic (counts up to DESCRIBE_KEYS_COUNTED_MAX keys) and DescribeCalls
# (a page of a topic's calls in flight: `laminar calls`) per second per node, each with its own bucket (so a
# dashboard polling calls cannot starve DescribeTopic, nor the reverse), as many at once in a burst; past it,
# RESOURCE_EXHAUSTED with a retry hint.
STATUS_CALLS_PER_S_MAX = 50
DESCRIBE_TOPIC_CALLS_PER_S_MAX = 50
DESCRIBE_CALLS_CALLS_PER_S_MAX = 50
# Calls of any other kind at once (health watches, reflection, refused calls on their way out); the
# server's bound on all calls is the sum of the bounds above and this.
OTHER_CALLS_MAX = 256
RETRY_HINT_MS_MIN = 100  # the shortest retry hint a RESOURCE_EXHAUSTED answer carries

# --- Client library ------------------------------------------------------------------------------
CLIENT_INFLIGHT_MAX = 16384  # messages sent but not yet committed; put() blocks past this
CLIENT_RECONNECT_BACKOFF_MS_MAX = 1000
# A node's retry hint (RESOURCE_EXHAUSTED, laminar-retry-after-ms) is honoured up to this: a broken or hostile
# node must not park a client for long; the client waits the hint (spread by up to a quarter), then retries.
CLIENT_RETRY_HINT_MS_MAX = 10_000
assert SESSION_UNCOMMITTED_INTENTIONS_MAX >= CLIENT_INFLIGHT_MAX, "flow control must never hold the Python client"
# Frames a client has sent on a session and the leader has not yet acknowledged (received or committed).
# Writes offered while this many are out wait and go in the next frame: under load frames grow instead
# of queueing one write each in the transport (see laminar/client/_client.py, _Connection).
CLIENT_FRAMES_INFLIGHT_MAX = 4
# A snapshot Listener holds the snapshot's frames until the last one has come, so that a stream cut mid-snapshot
# (the listener then asks another node, which may be at another offset, for a fresh one) never shows the user part of
# one node's snapshot followed by another's. Held bytes (as on the wire) are bounded by this, per listener, unless
# the listener is given another `snapshot_bytes_max`; past it, the listener ends with SnapshotTooLarge.
LISTENER_SNAPSHOT_BYTES_MAX = 64 * MIB

# --- Replicated state ----------------------------------------------------------------------------
# Results kept per client for answering a resent message with its original outcome. A client never
# has more than CLIENT_INFLIGHT_MAX messages in flight, so a resend is always inside this window.
DEDUPE_RESULTS_PER_CLIENT_MAX = CLIENT_INFLIGHT_MAX
# A client's results older than that window are dropped when its window passes a multiple of this many nonces,
# with one range delete (not one per entry: see STORE_POINT_DELETES_MAX), so a client keeps at most
# DEDUPE_RESULTS_PER_CLIENT_MAX + BATCH_INTENTIONS_MAX + DEDUPE_RESULTS_TRIM_STEP_NONCES results (5 B each in a run).
DEDUPE_RESULTS_TRIM_STEP_NONCES = 4096
# A client not heard from for this many intention offsets is forgotten (its dedupe record, kept results and
# expiry key dropped). It must outlast a client's reconnect after a fail-over or a partition: at this machine's
# peak of ~40,000 intentions/s that is ~4 minutes, and hours at ordinary loads. A client that comes back later
# with messages in flight is refused at Hello (FAILED_PRECONDITION: take a new client id), see docs/operations.md.
DEDUPE_CLIENT_EXPIRY_INTENTIONS = 10_000_000
# Nor for this long in log time (the leader's clock as the log carries it, the same on every node): at low load
# offsets barely move, and a client gone for a day is not coming back with messages in flight. Kafka forgets an
# idle producer id after the same day (producer.id.expiration.ms). A leader clock ahead by D expires D early.
DEDUPE_CLIENT_EXPIRY_MS = 24 * 3600 * 1000
# Clients with a dedupe record, at most: past it the least recently heard from is forgotten first, whatever the
# offsets say, so a flood of client ids that put once and vanish costs a bounded store (~130 B a client that
# sent one message; a client keeps a bounded number of results: see DEDUPE_RESULTS_TRIM_STEP_NONCES).
DEDUPE_CLIENTS_MAX = 100_000
# Clients forgotten per applied entry beyond that entry's own new clients, so expiry work per entry is bounded.
DEDUPE_EXPIRED_PER_BATCH_MAX = 64
DEDUPE_CLIENTS_CACHED_MAX = 100_000  # client records a node keeps in memory; the rest stay on disk
# A create past this many live topics is an ERROR effect. A live topic costs a node ~1 KiB of memory (more with a
# program: its runtime), a destroyed one nothing in memory and ~40 B plus its name on disk (its next offset).
TOPICS_LIVE_MAX = 10_000
# Topic names that ever existed, live or destroyed: a destroyed topic keeps its record (its next consequence offset,
# ~100 B on disk with its name) so that re-creating the name continues its offsets, which never reset. A create of a
# name never used, past this, is an ERROR effect (re-creating a destroyed name still works): 1,000,000 records cost a
# node ~100 MB of store and a second of scanning at start. Its events stay too: they are the topic's stream.
TOPIC_NAMES_MAX = 1_000_000
# Retention (docs/protocol.md, "Retention"): a topic's limits may be set up to these (0: no limit).
RETENTION_EVENTS_MAX = 2**62
RETENTION_BYTES_MAX = 2**62
RETENTION_AGE_MS_MAX = 100 * 365 * 24 * 3600 * 1000  # a century
# Events the retention walk reads per applied entry, over all topics: one entry's trimming costs at most
# this many store reads (~2 us each); a topic left over its limit is trimmed further by the next entries.
# Above BATCH_INTENTIONS_MAX, so a capped topic under full load keeps up (one event in, one out).
RETENTION_TRIM_EVENTS_PER_ENTRY_MAX = 32_768
# Topics over an age limit are looked at when log time crosses a multiple of this (not every entry).
RETENTION_AGE_CHECK_MS = 1000

# --- Sandbox (programs run at apply; every bound is deterministic: counts and sizes, never time) --
# Loop iterations and calls per handler invocation (the unit of the cost model: see docs/programs.md). What bounds a
# call's CPU, whatever the program: no operation costs more than 1 us of CPU per step on this project's machines (the
# calibration fuzzer's bound, bench/sandbox_fuzz.py), so steps alone cost at most 40 ms; keeping ctx.state (at most
# PROGRAM_STATE_OBJECTS_MAX objects, ~4 ms measured) and handing back its events (~3 ms for 1,024) fit in what is left
# of the 50 ms a call may take (issue 12). The cheapest guarded operation costs 0.3-0.6 us, so counting steps any
# finer than this cannot tighten the bound; the example programs use at most ~300 steps a call.
PROGRAM_STEPS_MAX = 40_000
# Largest value a program may build, in bytes, checked before it is built: a str at 1 byte a character if ASCII, else 4;
# bytes; a list or tuple at 8 bytes an element (a reference); a dict at 48 an entry (see sandbox/_values.py).
PROGRAM_VALUE_BYTES_MAX = 1 * MIB
PROGRAM_EVENTS_MAX = 1024  # events one handler invocation may emit
PROGRAM_STATE_BYTES_MAX = 1 * MIB  # serialized ctx.state after a call
PROGRAM_RECURSION_DEPTH_MAX = 50  # nested calls inside a program
# Largest int a program may build. 2048 bits is 617 decimal digits: below the 640-digit floor of
# Python's int<->str conversion limit (sys.set_int_max_str_digits), so no node's interpreter setting
# can change an outcome, and a multiplication or division of two such ints costs a few microseconds.
PROGRAM_INT_BITS_MAX = 2048
# Key and value bytes one handler invocation may emit, over all its events: one call cannot turn a
# small mutation into PROGRAM_EVENTS_MAX events of VALUE_BYTES_MAX each.
PROGRAM_EMITTED_BYTES_MAX = 4 * MIB
# Objects (containers, strings, numbers) in the serialized ctx.state. A call that touches the state re-serializes
# and re-loads it (see laminar/node/sandbox/_state.py), work its steps do not pay for (building [[]] * n costs n/64
# steps): this keeps that under ~4 ms even when the state is all tiny objects, which PROGRAM_STATE_BYTES_MAX alone
# allows a million of (100,000 objects took 12-25 ms a call). programs/balance.py at its largest cache (4,096
# accounts) keeps ~20,500.
PROGRAM_STATE_OBJECTS_MAX = 32_768

# --- Sandbox cost model (issue 12; see docs/programs.md, "Cost model") ------------------------------------------
# Syntax nodes of a program (its parsed tree). Compiling costs up to ~30 us a node (policy, RestrictedPython, our
# instrumentation, CPython's compiler), at create and again at every restart: 8192 nodes keep that under a quarter
# of a second. The biggest example program (programs/balance.py) has 852.
PROGRAM_SYNTAX_NODES_MAX = 8192
# Bytes module-level values may hold (str at 1 byte a character if ASCII, else 4; 8 bytes a reference; 32 a scalar):
# they live as long as the topic, on every node, and the module body's step budget alone would allow ~400 MB.
PROGRAM_MODULE_BYTES_MAX = 1 * MIB
# Stack of the threads that run programs, given when each is started (laminar/node/sandbox/_threads.py: the apply
# thread, the Raft thread, the sandbox's own; no program runs on any other thread): a call may recurse natively
# (compare, repr, json, pickle of nested data) up to its recursion headroom of 1000 levels, which needs well under
# 1 MiB (measured: see tests/unit/sandbox/test_sandbox_environment.py); 8 MiB is Linux's usual default, made explicit.
PROGRAM_THREAD_STACK_BYTES = 8 * MIB
# Program work waiting for the sandbox's own program thread, handed over by threads that may not run programs (their
# stack unknown: the main thread, a request thread); each such caller waits for its own (sandbox/_threads.py).
PROGRAM_HANDOFFS_QUEUED_MAX = 64
# What the program calls of one log entry may emit, over all of them: key and value bytes plus
# PROGRAM_EVENT_OVERHEAD_BYTES per event (what an event costs a node to hold while the entry is applied: its
# serialized record, the view's entry, the write batch's). Past it, the call that would cross it ends ERROR, on every
# node alike (the entry and its order are the same everywhere), so applying one entry holds at most ~2x this much.
# Without it, 8192 one-byte puts could emit PROGRAM_EMITTED_BYTES_MAX each: 32 GiB for one entry.
PROGRAM_ENTRY_EMITTED_BYTES_MAX = 32 * MIB
PROGRAM_EVENT_OVERHEAD_BYTES = 256
# What the topic states one log entry changes may cost a node, over all of them: each changed state's encoded bytes
# (written with the entry) plus PROGRAM_STATE_OBJECT_OVERHEAD_BYTES per object it may hold live (an object takes at
# least a byte of the encoding; measured live size per object: 32-143 bytes, 64 for the all-tiny-objects states that
# have the most), plus the module-level values of topics the entry creates. One state costs at most 3 MiB; without
# this, 8192 creates or puts that each grow a topic's state to 1 MiB would hold ~24 GiB for one entry. Past it, the
# call that would cross it ends ERROR and its state rolls back, on every node alike. While the topics changed so far
# could not reach it at their largest (16 topics), sizes are not computed: the common entry pays nothing.
PROGRAM_ENTRY_STATE_BYTES_MAX = 64 * MIB
PROGRAM_STATE_OBJECT_OVERHEAD_BYTES = 64
# Nesting the sandbox allows before any native recursion over it, by its own count (a RecursionError, whose threshold
# depends on how deep the node's code called in, must never decide an outcome): data compared, printed, sorted or
# turned into JSON, and JSON text parsed; and ctx.state (the pickler takes ~2 recursion levels a level). Both stay
# hundreds of levels inside a call's recursion headroom of 1000, with program functions' 50 levels on top.
PROGRAM_DATA_DEPTH_MAX = 400
PROGRAM_STATE_DEPTH_MAX = 300

# --- Consumers and groups (docs/consumers.md; replicated contract: every node uses the same values) ----------
CONSUMERS_PER_TOPIC_MAX = 64  # durable consumers and groups of one topic; creating one more is an ERROR effect
GROUP_MEMBERS_MAX = 64  # live members of one group; a join past it is an ERROR effect
GROUP_MEMBER_UNACKED_MAX = 1024  # events leased to one member at once, at most (a join may ask for fewer)
# Events of one group leased or waiting for redelivery at once. Grants stop at this many until acks free some,
# so the state a group keeps (and a member's stream scans) stays bounded whatever the topic's length.
GROUP_LEASES_MAX = 8192
GROUP_LEASE_MS_MIN = 100  # a lease (and a member's silence before it is dropped) lasts at least this long
GROUP_LEASE_MS_MAX = 3_600_000
GROUP_DELIVERIES_MAX = 100  # the largest deliveries_max a group may set (deliveries before dead-lettering)
GROUP_ACK_OFFSETS_MAX = 4096  # consequence offsets one GROUP_ACK intention carries
GROUP_GRANTS_PER_ENTRY_MAX = 4096  # leases granted while applying one log entry, over all groups (bounded work)
# Client side: a Listener's acks become one intention per this many acknowledged events, or per this long.
CONSUMER_ACK_FLUSH_EVENTS = 1024
CONSUMER_ACK_FLUSH_MS = 200
# --- Pipelines: calls from topic programs to services (docs/pipelines.md; replicated contract) ---------------
# Calls in flight (issued, no result yet). ctx.call past any of these fails its transaction (an ERROR effect),
# decided the same way on every node: a store plus a queue must not become a denial-of-service tool (seed 002).
CALLS_IN_FLIGHT_PER_TOPIC_MAX = 1024
CALLS_IN_FLIGHT_PER_SERVICE_MAX = 4096
CALLS_IN_FLIGHT_MAX = 65_536  # over the whole cluster: bounds the calls a node keeps in memory (metadata only)
CALLS_PER_HANDLER_MAX = 256  # ctx.call in one handler invocation (a scatter of N needs N <= this)
CALL_REQUEST_BYTES_MAX = 64 * KIB
CALL_RESPONSE_BYTES_MAX = 64 * KIB
CALL_CONTEXT_BYTES_MAX = 4 * KIB  # the caller's context, as JSON text
CALL_FAILURE_BYTES_MAX = 1 * KIB  # a worker's failure text
CALL_OVERHEAD_BYTES = 256  # what a call costs against PROGRAM_ENTRY_EMITTED_BYTES_MAX beyond its request and context
CALL_TIMEOUT_MS_DEFAULT = 60_000  # log time from issue to a "timeout" failure result, when ctx.call names none
CALL_TIMEOUT_MS_MIN = 100
CALL_TIMEOUT_MS_MAX = 86_400_000
CALL_DELIVERIES_MAX = 5  # leases of one call; when the last one expires too the call fails ("gave up")
WORKERS_PER_SERVICE_MAX = 64  # live workers of one service; a join past it is an ERROR effect
WORKER_SERVICES_MAX = 1024  # services with live workers; a join of a new service past it is an ERROR effect
WORKER_CALLS_DEFAULT = 64  # calls leased to one worker at once, when its join names none
WORKER_CALLS_MAX = 1024
WORKER_LEASE_MS_DEFAULT = 30_000
WORKER_LEASE_MS_MIN = 100  # a lease (and a worker's silence before it is dropped) lasts at least this long
WORKER_LEASE_MS_MAX = 3_600_000
CALL_GRANTS_PER_ENTRY_MAX = 4096  # leases granted while applying one log entry, over all services (bounded work)
# Timeouts and give-ups handled per applied entry (each runs an on_result); the rest wait for the next entry.
CALL_EXPIRIES_PER_ENTRY_MAX = 1024
CALLS_LISTED_MAX = 1000  # calls one DescribeCalls answer lists (page with after_id)
WORK_FRAME_CALLS_MAX = 256  # calls a node packs into one WorkFrame of a worker's stream
# ---- authentication and authorization (docs/security.md) -------------------------------------------
AUTH_USERS_MAX = 1000  # users in the replicated auth state; an add past this is refused
AUTH_ROLES_MAX = 1000
AUTH_GRANTS_PER_ROLE_MAX = 256
AUTH_ROLES_PER_USER_MAX = 64
AUTH_NAME_BYTES_MAX = 64  # user and role names: [A-Za-z0-9._-]
AUTH_TOKEN_BYTES_MAX = 1 * KIB  # a user's secret, as sent in USER_ADD or in `authorization` metadata
AUTH_TOKEN_HASH_ITERATIONS = 20_000  # PBKDF2-HMAC-SHA256 rounds: ~10 ms a verification, paid once per credential
AUTH_VERIFIED_CACHED_MAX = 4096  # credentials a node remembers as verified, until the auth state changes
AUTH_FAILURES_FREE = 5  # failed authentications from one peer address before it is throttled
AUTH_THROTTLE_MS_MIN = 200  # the first lock-out after the free failures; it doubles with each further failure
AUTH_THROTTLE_MS_MAX = 30_000
AUTH_PEERS_TRACKED_MAX = 4096  # peer addresses whose failures a node counts (least recently failed forgotten)
AUTH_SESSION_CHECKS_CACHED_MAX = 1024  # (kind, topic) pairs a session remembers as allowed, per auth state
# ---- pipelines, the worker's side (laminar/client/_worker.py; client only, not replicated) ---------------------
WORKER_RATE_PER_S_MAX = 1_000_000  # the largest rate_per_s a Worker takes (None: no rate limit at all)
WORKER_RATE_BURST_MS = 1000  # a rate-limited worker may hand out this long's worth of calls at once (at least one)
# A rate-limited worker asks the cluster for no more calls than it can start within this share of a lease at its
# rate (its join's calls_max: rate_per_s x lease x share, at least 1, at most its concurrency): a call leased to it
# then waits for the rate at most half its lease and has the other half to run, instead of lapsing in the worker's
# buffer and going to another worker (a delivery spent, towards CALL_DELIVERIES_MAX).
WORKER_RATE_WAIT_LEASE_SHARE = 0.5
# Call ids a worker remembers finishing, so a node that re-sends them (a new stream re-sends every call a worker
# holds, and a lagging node may not have applied the result yet) does not hand them out again. Past it, a re-sent
# call runs twice: execution is at least once, and the second result is INVALID.
WORKER_FINISHED_IDS_MAX = 4096
