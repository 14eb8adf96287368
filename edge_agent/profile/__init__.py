"""The networking profile: code tables, record encoders and spec text files."""
from edge_agent.profile.encode import Encoder
from edge_agent.profile.tables import Profile, SensorType, load_profile
from edge_agent.profile.textfile import write_text_file

__all__ = ["Encoder", "Profile", "SensorType", "load_profile", "write_text_file"]
