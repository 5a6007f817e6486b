"""The Laminar node. Run it with `laminar node --config FILE --id N`."""

from laminar.node._node import Node, run_node
from laminar.node.config import NodeConfig, load_config

__all__ = ["Node", "NodeConfig", "load_config", "run_node"]
