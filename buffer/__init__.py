"""Store-and-forward: the durable SQLite buffer between the pipeline and the sinks."""
from edge_agent.buffer.store import DEFAULT_SINKS, Buffer, Row

__all__ = ["DEFAULT_SINKS", "Buffer", "Row"]
