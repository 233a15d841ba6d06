"""The Server-Sent Events wire format, for the API's streams: see ``processman.sse``."""

from processman.sse import EventParser, ServerSentEvent, format_comment, format_event

__all__ = ["EventParser", "ServerSentEvent", "format_comment", "format_event"]
