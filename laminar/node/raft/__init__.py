"""The Raft log: pysyncobj carries it; this package is the only place that imports pysyncobj."""

from laminar.node.raft._engine import RaftEngine, RaftSettings
from laminar.node.raft._proposer import Proposer
from laminar.node.raft._snapshot import SnapshotHooks

__all__ = ["Proposer", "RaftEngine", "RaftSettings", "SnapshotHooks"]
