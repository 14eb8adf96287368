"""Store-and-forward: the durable SQLite buffer between the pipeline and the sinks."""
from edge_agent.buffer.store import ALL_SINKS, SINKS, Buffer, Row

__all__ = ["ALL_SINKS", "SINKS", "Buffer", "Row"]
