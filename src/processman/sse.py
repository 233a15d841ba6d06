"""The Server-Sent Events wire format: writing events on the server, reading them in the CLI and tests.

It lives outside ``processman.api`` so that the CLI client reads events without importing the server.

An event is a few ``field: value`` lines and a blank line::

    id: 42
    event: log
    data: {"timestamp": "...", "processId": "web", "stream": "stdout", "content": "hi", "seq": 42}

Lines starting with ``:`` are comments (keep-alives).
"""

from __future__ import annotations

from dataclasses import dataclass


def format_event(data: str, *, event: str | None = None, event_id: int | None = None) -> str:
    """One event. ``data`` may span lines: each becomes its own ``data:`` line, as the format requires."""
    parts = []
    if event_id is not None:
        parts.append(f"id: {event_id}\n")
    if event is not None:
        parts.append(f"event: {event}\n")
    parts.extend(f"data: {line}\n" for line in data.split("\n"))
    parts.append("\n")
    return "".join(parts)


def format_comment(text: str) -> str:
    return f": {text}\n\n"


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None = None


class EventParser:
    """Feeds on lines (without their line ends) and returns each event as its blank line arrives."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self.last_id: str | None = None

    def feed(self, line: str) -> ServerSentEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if self._id is not None:
            self.last_id = self._id
        if not self._data:
            self._event, self._id = "", None
            return None
        event = ServerSentEvent(self._event or "message", "\n".join(self._data), self._id)
        self._event, self._data, self._id = "", [], None
        return event
