"""The pure, deterministic state machine: apply(entry) -> effects, events and a write set."""

from laminar.node.state_machine._calls import CallsApplied
from laminar.node.state_machine._machine import Applied, Outcome, StateMachine

__all__ = ["Applied", "CallsApplied", "Outcome", "StateMachine"]
