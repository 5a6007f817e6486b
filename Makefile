# Laminar. `make cluster` runs a local cluster; `make test` runs the test suite; `make help` lists
# every target. Each creates the virtual environment in .venv and installs what it needs first:
# `make cluster` only the runtime dependencies, everything else also the dev extras.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev
NODES ?= 3
PYTEST_ARGS ?=
# `make test` runs its files on this many pytest workers (pytest-xdist; one file stays on one worker, so a
# module's cluster fixture is shared as before). Most of the suite waits on elections, timeouts and node start-up,
# so two workers on a 2-core machine take ~0.7x the time of one. TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help install cluster demo test lint proto proto-etcd proto-check unit integration torture sim sim-proof bench \
	bench-quick bench-soak bench-etcd bench-recovery bench-auth bench-retention bench-curves bench-pipelines fuzz-sandbox hostile \
	pipeline-faults clean-data clean

$(RUNTIME_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): $(RUNTIME_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

## List the targets with what each does.
help:
	@awk '/^## /{doc = doc (doc == "" ? "" : " ") substr($$0, 4); next} \
		/^[a-z][a-z-]*:/{if (doc != "") printf "  %-15s %s\n", substr($$0, 1, index($$0, ":") - 1), doc; doc = ""; next} \
		/\?=/{next} {doc = ""}' $(firstword $(MAKEFILE_LIST))

## Create .venv with the project and its dev tools (tests, lint, benchmarks).
install: $(DEV_STAMP)

## Run a local cluster in the foreground (NODES=1, 3 or 5); Ctrl-C stops it.
cluster: $(RUNTIME_STAMP)
	$(BIN)/laminar cluster run --config cluster/local-$(NODES).toml

## Bank demo: concurrent CAS transfers through programs/balance.py (uses `make cluster` if it runs).
demo: $(DEV_STAMP)
	$(BIN)/python examples/bank.py

## Lint, type-check, check generated code is current, then run the default test suite.
test: lint proto-check
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

## ruff (lint and format check) and mypy.
lint: $(DEV_STAMP)
	$(BIN)/ruff check laminar tests bench programs
	$(BIN)/ruff format --check laminar tests bench
	$(BIN)/mypy

## Regenerate laminar/v1 from proto/ with the pinned grpcio-tools.
proto: $(DEV_STAMP)
	$(BIN)/python -m grpc_tools.protoc -I proto --python_out=. --pyi_out=. --grpc_python_out=. proto/laminar/v1/laminar.proto

## Regenerate bench/etcdv3 (the benchmark's etcd v3 client messages) from bench/etcdv3/rpc.proto.
proto-etcd: $(DEV_STAMP)
	$(BIN)/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. bench/etcdv3/rpc.proto

## Check that laminar/v1 is what `make proto` generates from proto/.
proto-check: $(DEV_STAMP)
	$(BIN)/python -m pytest -q tests/unit/test_proto_current.py

## Unit tests only (no node processes).
unit: $(DEV_STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

## Integration tests only (real nodes on loopback).
integration: $(DEV_STAMP)
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

## Long fault-injection run with the Jepsen-style checker (summary in bench/results/, history and node logs in var/).
## NETWORK: netns (partitions and delays on real links, needs root), hook (in-process), or auto.
SECONDS ?= 600
SEED ?=
NETWORK ?= auto
torture: $(DEV_STAMP)
	$(BIN)/python tests/fault/torture.py --seconds $(SECONDS) --network $(NETWORK) $(if $(SEED),--seed $(SEED))

## Deterministic simulator (tests/sim/README.md): SEEDS seeds from FIRST_SEED, 3 and 5 nodes in turn.
## SEED=n NODES=3 replays one seed with its trace; REVERT=reply-term,... takes fixes back; MEMBERSHIP=1;
## TAIL_LOSS=1 runs the mix aimed at 6354a97 (tests/sim/README.md). Seeds divisible by SIM_PIPELINES_EVERY also
## drive pipeline calls, workers and results (0: none); PIPELINES=1: every seed does. Seeds s with
## s % SIM_CONSUMERS_EVERY == 3 % SIM_CONSUMERS_EVERY drive durable consumers and consumer groups on a topic with
## retention (0: none); CONSUMERS=1: every seed does.
SEEDS ?= 100
FIRST_SEED ?= 1
SIM_NETWORK ?= tcp
REVERT ?=
MEMBERSHIP ?=
TAIL_LOSS ?=
SIM_PIPELINES_EVERY ?= 5
PIPELINES ?=
SIM_CONSUMERS_EVERY ?= 5
CONSUMERS ?=
sim: $(DEV_STAMP)
	$(BIN)/python -m tests.sim --seeds $(SEEDS) --first-seed $(FIRST_SEED) --network $(SIM_NETWORK) \
		$(if $(SEED),--seed $(SEED) --nodes $(NODES)) $(if $(REVERT),--revert $(REVERT)) \
		$(if $(MEMBERSHIP),--membership) $(if $(TAIL_LOSS),--tail-loss) \
		--pipelines-every $(SIM_PIPELINES_EVERY) $(if $(PIPELINES),--pipelines) \
		--consumers-every $(SIM_CONSUMERS_EVERY) $(if $(CONSUMERS),--consumers)

## The simulator's proof that it finds each fixed bug: every fix taken back in turn must break an invariant.
sim-proof: $(DEV_STAMP)
	$(BIN)/python -m pytest -m sim -k finds_the_loss tests/sim $(PYTEST_ARGS)

# Benchmarks (never part of `make test`; see docs/benchmarks.md). Results go to bench/results/.
## Full matrix (default and none), sequential commits, the raw Raft ceiling, then the etcd comparison: 44 min on the
## shared 2-core machine at load 20-50 (31 min matrix, 10 min etcd; far less when idle).
bench: $(DEV_STAMP)
	$(BIN)/python -m bench run --durability default,none
	$(BIN)/python -m bench.etcd_compare

## Laminar beside 3 etcd members, same workloads in alternating rounds (installs Debian's etcd-server if missing).
bench-etcd: $(DEV_STAMP)
	$(BIN)/python -m bench.etcd_compare

## A reduced matrix in under two minutes.
bench-quick: $(DEV_STAMP)
	$(BIN)/python -m bench quick

## 1,000,000 messages through 3 nodes: throughput and each node's RSS over time.
bench-soak: $(DEV_STAMP)
	$(BIN)/python -m bench soak

## Authorization overhead: auth off and on in alternating rounds on one 3-node cluster (bench/results/auth.md).
bench-auth: $(DEV_STAMP)
	$(BIN)/python -m bench.auth --rounds 5 --messages 10000 --sequential 300

## A topic capped at 100,000 events under 5,000,000 puts (at most 30 min): its disk and RSS stay flat.
bench-retention: $(DEV_STAMP)
	nice $(BIN)/python -m bench.retention --writes 5000000 --cap 100000 --seconds 1800

## Cost curves (issue 14): throughput and node RSS against topics, value size, listeners and clients, one 3-node
## cluster per curve (a few minutes; bench/results/curves.md reads it).
bench-curves: $(DEV_STAMP)
	$(BIN)/python -m bench.cost_curves

## Pipelines (issue 17): plain write rate, then completed calls/s with a fast and a slow worker, on one 3-node cluster
## (a few minutes; bench/results/pipelines.md).
bench-pipelines: $(DEV_STAMP)
	$(BIN)/python -m bench.pipelines --calls 20000 --slow-calls 5000 --rounds 3 --write

## Pipelines under faults: examples/pipeline.py with 10,000 orders, the leader and a worker killed during the run;
## a worker across the leader's death.
pipeline-faults: $(DEV_STAMP)
	$(BIN)/python -m pytest -m slow -s tests/fault/test_pipeline_faults.py tests/integration/test_pipeline_worker.py \
		$(PYTEST_ARGS)

## Restart time after 10K and 1M messages, and a new node's sync from scratch.
bench-recovery: $(DEV_STAMP)
	$(BIN)/python -m bench.recovery --messages 10000 1000000

## The sandbox cost model's calibration fuzzer, long: worst CPU per charged step per operation, and peak memory.
fuzz-sandbox: $(DEV_STAMP)
	$(BIN)/python -m bench.sandbox_fuzz --extra 6 --memory

## Hostile clients (issue 15): every attack on a fresh 3-node cluster beside a well-behaved client, as a table
## (about 8 minutes; HOSTILE_SCALE=short for a sample; docs/operations.md, "Hostile clients", reads it).
HOSTILE_SCALE ?= full
HOSTILE_ATTACKS ?=
hostile: $(DEV_STAMP)
	$(BIN)/python -m bench.hostile --scale $(HOSTILE_SCALE) $(if $(HOSTILE_ATTACKS),--attacks $(HOSTILE_ATTACKS))

## Wipe the data of `make cluster` (var/).
clean-data:
	rm -rf var

## Wipe var/ and the virtual environment and tool caches.
clean: clean-data
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
