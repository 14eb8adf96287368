"""edge-agent: an edge gateway agent for underground mines.

Polls devices over Modbus and OPC UA, checks every value against its alarm and
cut-off thresholds, keeps what it must send in a durable SQLite buffer, and
forwards standardized records over MQTT and as the regulator's text files.
"""
from edge_agent.config import Site, load_site
from edge_agent.errors import ConfigError, EdgeAgentError
from edge_agent.frame import Frame

__version__ = "0.1.0"
__all__ = ["ConfigError", "EdgeAgentError", "Frame", "Site", "load_site", "__version__"]
