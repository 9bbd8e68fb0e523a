"""``crdtsync signal --log-format json``: one JSON object per log line, for log collectors.

The signaling server's log calls pass ``extra=log_fields(event, room=..., peer=..., code=...)``;
the text format ignores those fields (the message says it all), ``JsonFormatter`` writes them
as keys beside ``time``, ``level``, ``logger`` and ``message``. Values that come from remote
input (room names, peer ids) are cut short, and JSON escaping keeps every record on one line.
"""

from __future__ import annotations

import datetime
import json
import logging

from crdtsync.signaling.limits import cut

__all__ = ["FIELDS", "JsonFormatter", "json_handler", "log_fields"]

# The structured fields a record may carry, in the order a JSON line lists them.
FIELDS = ("event", "room", "peer", "connection", "code")

# A room name may be up to a message long; a log line quotes its first characters.
_MAX_VALUE = 100


def log_fields(
    event: str,
    *,
    room: str | None = None,
    peer: str | None = None,
    connection: int | None = None,
    code: str | int | None = None,
) -> dict[str, object]:
    """The ``extra=`` of a log call: what happened (``event``) and, when known, the room, the
    peer (its id), the connection (y-webrtc clients have no proven id) and the code (a
    refusal's, or a WebSocket close code)."""
    given = {"room": room, "peer": peer, "connection": connection, "code": code}
    fields: dict[str, object] = {"event": event}
    for name, value in given.items():
        if value is not None:
            fields[name] = cut(value, _MAX_VALUE) if isinstance(value, str) else value
    return fields


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: time (UTC, ISO 8601), level, logger, the structured fields
    it carries, message, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        line["message"] = record.getMessage()
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def json_handler() -> logging.Handler:
    """A stderr handler that writes JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    return handler
