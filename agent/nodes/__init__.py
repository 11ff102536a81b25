"""Node classes users subclass."""

from agent.nodes.background_agent import BackgroundAgentNode
from agent.nodes.base import Node
from agent.nodes.output_agent import OutputAgentNode

OutputCrewNode = OutputAgentNode
BackgroundCrewNode = BackgroundAgentNode
CrewNode = Node

__all__ = [
    "BackgroundAgentNode",
    "BackgroundCrewNode",
    "CrewNode",
    "Node",
    "OutputAgentNode",
    "OutputCrewNode",
]
