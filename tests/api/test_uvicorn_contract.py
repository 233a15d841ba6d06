"""The parts of uvicorn and h11 that ``api/server.py`` and ``api/protocol.py`` override or call beyond
their documented surface. pyproject.toml bounds both below their next release; when an upgrade moves
any of these, this file fails and names what moved, before a server quietly stops sleeping, keeps its
signal handlers, or accepts requests it should refuse."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable
from typing import Any

import h11
import pytest
import uvicorn
from starlette.responses import PlainTextResponse
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle
from uvicorn.server import ServerState

from processman.api.protocol import GuardedH11Protocol, LimitedConnection, guarded_protocol
from processman.api.server import _Server


def parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def source(function: Callable[..., Any]) -> str:
    return inspect.getsource(function)


async def app(scope: Any, receive: Any, send: Any) -> None:
    await PlainTextResponse("ok")(scope, receive, send)


def loaded_config(**options: Any) -> uvicorn.Config:
    config = uvicorn.Config(app, **options)
    config.load()
    return config


# ---- uvicorn.Server, which _Server overrides ------------------------------------------------------


def test_server_methods_we_override_keep_their_signatures() -> None:
    assert parameters(uvicorn.Server.__init__) == ["self", "config"]
    assert parameters(uvicorn.Server.startup) == ["self", "sockets"]
    assert parameters(uvicorn.Server.serve) == ["self", "sockets"]
    assert parameters(uvicorn.Server.main_loop) == ["self"]
    assert parameters(uvicorn.Server.capture_signals) == ["self"]
    assert inspect.iscoroutinefunction(uvicorn.Server.startup)
    assert inspect.iscoroutinefunction(uvicorn.Server.main_loop)


def test_serving_goes_through_the_hooks_we_override() -> None:
    """serve() must install signals only through capture_signals (ours does nothing), wait in main_loop
    (ours sleeps until should_exit), and read should_exit (ours is a property that wakes main_loop)."""
    serving = source(uvicorn.Server.serve) + source(uvicorn.Server._serve)
    assert "self.capture_signals()" in serving
    assert "self.main_loop()" in serving
    assert "signal.signal" not in serving and "add_signal_handler" not in serving
    assert "should_exit" in source(uvicorn.Server.main_loop)
    assert "self.started" in source(uvicorn.Server._serve)


def test_the_shutdown_we_shorten_does_what_ours_does() -> None:
    """Ours skips uvicorn's pause for open connections when there is none; the rest of its shutdown
    must stay what ours repeats: close the servers and sockets, wait for them, end the lifespan."""
    assert parameters(uvicorn.Server.shutdown) == ["self", "sockets"]
    shutdown = source(uvicorn.Server.shutdown)
    assert "server.close()" in shutdown and "sock.close()" in shutdown
    assert "await asyncio.sleep(0.1)" in shutdown, "the pause ours skips"
    assert "self.lifespan.shutdown()" in shutdown and "self.force_exit" in shutdown
    assert "server.wait_closed()" in source(uvicorn.Server._wait_tasks_to_complete)


async def test_a_shutdown_without_connections_does_not_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    server = _Server(loaded_config(lifespan="off", port=0), lambda: None)
    server.lifespan = server.config.lifespan_class(server.config)  # as serve() makes it
    await server.startup(sockets=None)
    assert server.started and not server.server_state.connections

    async def pausing(self: uvicorn.Server, sockets: Any = None) -> None:
        raise AssertionError("uvicorn's own shutdown (with its pause) ran with no connection open")

    monkeypatch.setattr(uvicorn.Server, "shutdown", pausing)
    await server.shutdown()
    assert all(not listening.is_serving() for listening in server.servers)


def test_the_server_state_our_date_renewal_writes() -> None:
    server = _Server(loaded_config(), lambda: None)
    assert isinstance(server.server_state, ServerState)
    assert isinstance(server.server_state.default_headers, list)
    assert isinstance(server.config.date_header, bool)
    assert isinstance(server.config.encoded_headers, list)
    assert server.should_exit is False and server.started is False
    # Requests take this very list: renewing it in place reaches them.
    assert "default_headers=self.server_state.default_headers" in source(H11Protocol.handle_events)


def test_config_takes_the_options_we_pass() -> None:
    accepted = set(parameters(uvicorn.Config.__init__))
    ours = {"lifespan", "log_config", "log_level", "access_log", "server_header", "timeout_graceful_shutdown"}
    assert ours | {"http"} <= accepted
    protocol = guarded_protocol(5.0, 10)
    config = loaded_config(http=protocol, lifespan="off", log_config=None, server_header=False)
    assert config.http_protocol_class is protocol, "a protocol class given as http= is used as is"


# ---- H11Protocol, which GuardedH11Protocol extends -----------------------------------------------


def test_protocol_methods_we_override_keep_their_signatures() -> None:
    assert parameters(H11Protocol.__init__) == ["self", "config", "server_state", "app_state", "_loop"]
    assert parameters(H11Protocol.connection_made) == ["self", "transport"]
    assert parameters(H11Protocol.data_received) == ["self", "data"]
    assert parameters(H11Protocol.connection_lost) == ["self", "exc"]


def test_the_protocol_parses_with_the_connection_we_give_it() -> None:
    """We replace ``conn`` after uvicorn's __init__: uvicorn must feed and read that attribute, and
    answer h11's RemoteProtocolError with its 400."""
    assert "self.conn.receive_data(data)" in source(H11Protocol.data_received)
    handling = source(H11Protocol.handle_events)
    assert "self.conn.next_event()" in handling
    assert "except h11.RemoteProtocolError" in handling and "self.send_400_response(" in handling
    assert parameters(H11Protocol.send_400_response) == ["self", "msg"]


async def test_the_guarded_protocol_has_what_it_reads() -> None:
    protocol_class = guarded_protocol(5.0, 10)
    config = loaded_config(http=protocol_class)
    state = ServerState()
    protocol = protocol_class(config=config, server_state=state, app_state={})
    assert isinstance(protocol, GuardedH11Protocol)
    assert isinstance(protocol.conn, LimitedConnection)
    assert protocol.connections is state.connections
    assert protocol.loop is asyncio.get_running_loop()
    assert protocol.cycle is None and hasattr(protocol, "transport")
    assert "response_complete" in source(RequestResponseCycle.__init__)


# ---- h11 ------------------------------------------------------------------------------------------


def test_h11_connection_and_events_we_use() -> None:
    assert parameters(h11.Connection.__init__) == ["self", "our_role", "max_incomplete_event_size"]
    assert parameters(h11.Connection.next_event) == ["self"]
    assert isinstance(inspect.getattr_static(h11.Connection, "their_state"), property)
    assert parameters(h11.RemoteProtocolError.__init__) == ["self", "msg", "error_status_hint"]
    for name in ("IDLE", "SEND_BODY", "SERVER", "NEED_DATA", "PAUSED", "Event", "Request"):
        assert hasattr(h11, name), name
    request = h11.Request(method="GET", target="/x", headers=[("Host", "a")])
    assert (request.method, request.target, request.http_version) == (b"GET", b"/x", b"1.1")


def test_h11_refuses_a_long_head_still_arriving_by_itself() -> None:
    """The limit we keep for heads that arrive in pieces is h11's own."""
    connection = LimitedConnection(h11.SERVER, max_incomplete_event_size=1024)
    connection.receive_data(b"GET /" + b"x" * 2000)
    with pytest.raises(h11.RemoteProtocolError):
        connection.next_event()


@pytest.mark.parametrize("name", ["capture_signals", "startup", "main_loop", "should_exit"])
def test_our_overrides_are_still_overrides(name: str) -> None:
    """A name uvicorn dropped would leave ours in place, called by nobody."""
    assert hasattr(uvicorn.Server, name) or name in vars(uvicorn.Server(loaded_config())), name


def test_capture_signals_is_a_context_manager() -> None:
    server = uvicorn.Server(loaded_config())
    assert isinstance(server.capture_signals(), contextlib.AbstractContextManager)
