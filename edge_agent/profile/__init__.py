"""The networking profile: code tables, record encoders and spec text files."""
from edge_agent.profile.tables import Profile, SensorType, load_profile

__all__ = ["Profile", "SensorType", "load_profile"]
