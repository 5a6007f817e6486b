"""The floor harness's parts (bench/floor.py): each measures what it names, with no Laminar code in it."""

from __future__ import annotations

import pytest

from bench import floor
from bench.grpc_echo import EchoClient
from bench.raft_ceiling import run_sequential


@pytest.mark.timeout(60)
def test_the_echo_server_answers_each_frame_with_itself_on_one_stream() -> None:
    """A Python gRPC round trip: the frame comes back unchanged, one at a time, and takes a positive time."""
    server, address = floor._start_echo_server()
    try:
        with EchoClient(address) as echo:
            latencies_s = [echo.round_trip(bytes([n]) * floor.FRAME_BYTES) for n in range(20)]
    finally:
        server.terminate()
        server.wait(10)
    assert len(latencies_s) == 20 and all(0 < s < 10 for s in latencies_s)


@pytest.mark.timeout(90)
def test_pysyncobj_alone_commits_commands_one_at_a_time_and_reports_each_latency() -> None:
    """Sequential mode of the raw-Raft ceiling: every command committed, one latency per command."""
    result = run_sequential(30)
    assert result is not None and result["failures"] == {}
    assert result["commits"] == 30 and len(result["latencies_s"]) == 30
    assert all(0 < s < 10 for s in result["latencies_s"])


def test_the_report_adds_the_python_parts_into_the_floor_and_compares_it_with_etcds_put() -> None:
    """The floor is the sum of the gRPC round trip, pysyncobj's commit and fdatasync, as a ratio of etcd's put."""
    ms = 1e-3
    samples = {part: [[1.0 * ms] * 100] for part in floor.PARTS}
    samples[floor.PYTHON_GRPC] = [[0.5 * ms] * 100]
    samples[floor.PYSYNCOBJ] = [[0.6 * ms] * 100]
    samples[floor.FDATASYNC] = [[0.1 * ms] * 100]
    samples[floor.ETCD_PUT] = [[1.2 * ms] * 100]
    text = floor.report(samples, "python -m bench.floor", "0.00 0.00 0.00")
    assert "**1.200 ms = 1.00x** etcd's put (1.200 ms)" in text
    assert "Left for all of Laminar's own work at 1.0x etcd: 0.000 ms" in text
