"""Graded warning's closed loop: the alarm book, disposal, response deadlines and the local API.

    from edge_agent.alarms import AlarmBook, AlarmError

See book.py for what the book does with level changes, api.py for the HTTP
API, cli.py for `edge-agent alarms list|show|ack|dispose`.
"""
from edge_agent.alarms.book import AlarmBook
from edge_agent.alarms.config import AlarmsCfg, ConsoleCfg
from edge_agent.alarms.inputs import AlarmError

__all__ = ["AlarmBook", "AlarmError", "AlarmsCfg", "ConsoleCfg"]
