"""Client commands that talk to a running ``processman serve`` over HTTP, in the style of pm2 and
supervisorctl: ``list``, ``start``/``stop``/``restart`` (an id, or ``all``), ``logs [-f]``.

The server is ``--url`` or ``$PROCESSMAN_URL`` (default http://127.0.0.1:8091); the token is
``--token`` or ``$PROCESSMAN_TOKEN``, else the file ``serve`` wrote (``--dir``/processman/token).
Every failure is one line on stderr and an exit code: 1 the request failed (unknown id, already
running), 3 the server cannot be reached, 4 not authorised.

A client command's time is mostly Python starting up, so this module imports nothing of the server
(engine, API), and a plain request goes through the standard library's ``http.client``: importing httpx
(with httpcore) would double the time of ``processman list``. The live streams of ``logs -f`` are read
with httpx, imported only there.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import click

from processman.cli.console import SYSTEM_BAR, as_system_note, terminal_safe
from processman.sse import EventParser, ServerSentEvent
from processman.tokenfile import TOKEN_ENV, read_token, token_path

if TYPE_CHECKING:
    import ssl

    import httpx

DEFAULT_URL = "http://127.0.0.1:8091"
URL_ENV = "PROCESSMAN_URL"
EXIT_FAILED = 1
EXIT_UNREACHABLE = 3
EXIT_UNAUTHORISED = 4
CONNECT_TIMEOUT = 5.0
# Seconds to wait for an answer. stop waits for the process tree to go (stopTimeout, 10 s by default),
# so actions may take a while.
ACTION_TIMEOUT = 120.0
READ_TIMEOUT = 30.0
RECONNECT_FOR = 5.0

_STATUS_STYLE: dict[str, dict[str, Any]] = {
    "running": {"fg": "green"},
    "starting": {"fg": "cyan"},
    "stopping": {"fg": "yellow"},
    "stopped": {"dim": True},
    "crashed": {"fg": "red"},
    "failed": {"fg": "red", "bold": True},
}

F = TypeVar("F", bound=Callable[..., Any])


class ClientError(click.ClickException):
    exit_code = EXIT_FAILED

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status, when the server answered


class Unreachable(ClientError):
    exit_code = EXIT_UNREACHABLE


class Unauthorised(ClientError):
    exit_code = EXIT_UNAUTHORISED


def unknown_id(process_id: str) -> ClientError:
    shown = process_id if len(process_id) <= 80 else process_id[:80] + "..."
    return ClientError(f"unknown process id {shown!r} (see `processman list`)", status=404)


def tls_context() -> ssl.SSLContext:
    """The certificates an https:// server is checked against: certifi's, as httpx does by default."""
    import ssl

    import certifi

    return ssl.create_default_context(cafile=certifi.where())


@dataclass
class Connection:
    """Where the server is and how to prove who we are; ``token_source`` is said in auth errors."""

    url: str
    token: str | None
    token_source: str

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self, timeout: float | None = READ_TIMEOUT) -> httpx.Client:
        import httpx

        return httpx.Client(
            base_url=self.url,
            headers=self.headers(),
            timeout=httpx.Timeout(CONNECT_TIMEOUT, read=timeout),
            trust_env=False,
            # Loading the CA certificates takes tens of milliseconds: only an https:// server needs them
            # (redirects are not followed, so a plain http:// server never leads to TLS).
            verify=tls_context() if self.url.startswith("https://") else False,
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        timeout: float = READ_TIMEOUT,
        params: dict[str, str | int] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> Any:
        """The JSON answer of a request (``json_body`` sent as JSON), or a ClientError that says what went
        wrong."""
        import http.client

        parts = urlsplit(self.url)
        target = parts.path + path + (f"?{urlencode(params)}" if params else "")
        host, port = parts.hostname or "", parts.port
        connection = (
            http.client.HTTPSConnection(host, port, timeout=CONNECT_TIMEOUT, context=tls_context())
            if parts.scheme == "https"
            else http.client.HTTPConnection(host, port, timeout=CONNECT_TIMEOUT)
        )
        try:
            try:
                connection.connect()
            except (OSError, http.client.HTTPException) as exc:
                raise self.unreachable(exc) from None
            connection.sock.settimeout(timeout)
            try:
                headers = {**self.headers(), "Accept": "application/json"}
                payload = None
                if json_body is not None:
                    payload = json.dumps(json_body).encode()
                    headers["Content-Type"] = "application/json"
                connection.request(method, target, body=payload, headers=headers)
                response = connection.getresponse()
                body = response.read()
            except TimeoutError:
                raise ClientError(f"{self.url} did not answer {method} {path} within {timeout:g} s") from None
            except (OSError, http.client.HTTPException) as exc:
                raise self.unreachable(exc) from None
        finally:
            connection.close()
        self.check(response.status, response.reason, body)
        try:
            return json.loads(body)
        except ValueError:
            raise ClientError(
                f"{self.url} did not answer {path} with JSON: is it a processman server?"
            ) from None

    def unreachable(self, exc: Exception) -> ClientError:
        return Unreachable(
            f"cannot reach the processman server at {self.url} ({exc}); is `processman serve` running? "
            f"(set --url or ${URL_ENV} for another address)"
        )

    def check_reply(self, reply: httpx.Response) -> None:
        """``check`` for a reply read with httpx (a live stream)."""
        if not reply.is_success:
            self.check(reply.status_code, reply.reason_phrase, reply.read())

    def check(self, status: int, reason: str, body: bytes) -> None:
        """Nothing for a success; else the ClientError that says what the server answered."""
        if 200 <= status < 300:
            return
        details = ""
        try:
            answer = json.loads(body)
            message = str(answer.get("message", "")) or reason
            problems = answer.get("data", {}).get("problems")
            if isinstance(problems, list):  # a reload refused: list why
                details = "".join(f"\n  {problem}" for problem in problems)
        except (ValueError, AttributeError):
            message = reason
        if status == 401:
            raise Unauthorised(f"not authorised: {self._token_advice()}", status)
        if status == 403:
            raise Unauthorised(f"not authorised: the token is not a superuser's ({message})", status)
        raise ClientError(f"{message} (HTTP {status}){details}", status=status)

    def _token_advice(self) -> str:
        if self.token is None:
            return f"no token ({self.token_source}); pass --token or set ${TOKEN_ENV}"
        return f"the server refused the token from {self.token_source}"


def connection_options(command: F) -> F:
    options = [
        click.option(
            "--url",
            envvar=URL_ENV,
            default=DEFAULT_URL,
            show_default=True,
            help=f"Server address [${URL_ENV}].",
        ),
        click.option("--token", envvar=TOKEN_ENV, default=None, help=f"API token [${TOKEN_ENV}]."),
        click.option(
            "--dir",
            "data_dir",
            type=click.Path(path_type=Path, file_okay=False),
            default=Path("pb_data"),
            show_default=True,
            help="Data folder of the server, to read its token file when no token is given.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def connect(url: str, token: str | None, data_dir: Path) -> Connection:
    url = url.rstrip("/")
    parts = urlsplit(url)
    try:
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number
        valid = False
    if not valid:
        raise click.BadParameter(f"expected an http:// or https:// URL, got {url!r}", param_hint="--url")
    if token:
        return Connection(url, token, f"--token or ${TOKEN_ENV}")
    path = token_path(data_dir)
    found = read_token(path)
    source = f"the file {path}" if found else f"none given, and no token file at {path}"
    return Connection(url, found, source)


def process_path(process_id: str, action: str) -> str:
    return f"/api/pm/{quote(process_id, safe='')}/{action}"


# ---- list ----------------------------------------------------------------------------------------


def format_table(states: list[dict[str, Any]], width: int) -> list[str]:
    """The rows of ``processman list``: id, status, pid, uptime, restarts, last error (cut to fit)."""
    headers = ("ID", "STATUS", "PID", "UPTIME", "RESTARTS", "LAST ERROR")
    rows = [
        (
            str(state["id"]),
            str(state["status"]),
            str(state["pid"]) if state.get("pid") else "-",
            str(state.get("uptime") or "-") if state.get("pid") else "-",
            str(state.get("restartCount", 0)),
            " ".join(str(state.get("lastError") or "").split()),
        )
        for state in states
    ]
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(5)]
    room = max(width - sum(widths) - 2 * 5, 20)
    lines = []
    for index, row in enumerate([headers, *rows]):
        cells = [row[i].ljust(widths[i]) for i in range(5)]
        if index == 0:
            cells = [click.style(cell, bold=True) for cell in cells]
        else:
            cells[1] = click.style(cells[1], **_STATUS_STYLE.get(row[1], {}))
        error = row[5] if len(row[5]) <= room else row[5][: room - 3] + "..."
        if index > 0 and error:
            error = click.style(error, fg="red")
        elif index == 0:
            error = click.style(error, bold=True)
        lines.append("  ".join([*cells, error]).rstrip())
    return lines


@click.command("list")
@connection_options
@click.option("--json", "as_json", is_flag=True, help="Print the server's JSON as is.")
def list_command(url: str, token: str | None, data_dir: Path, as_json: bool) -> None:
    """Show every process: id, status, pid, uptime, restarts and last error."""
    connection = connect(url, token, data_dir)
    states = connection.request("GET", "/api/pm/list")
    if as_json:
        click.echo(json.dumps(states, indent=2))
        return
    if not states:
        click.echo("no processes configured")
    else:
        for line in format_table(states, shutil.get_terminal_size((120, 24)).columns):
            click.echo(line)
    click.echo(containment_line(connection))


def containment_line(connection: Connection) -> str:
    """How the server keeps process trees together (a server without /api/pm/health: unknown)."""
    try:
        health = connection.request("GET", "/api/pm/health")
    except ClientError:
        return click.style("containment: unknown", dim=True)
    name = str(health.get("containment", "unknown")) if isinstance(health, dict) else "unknown"
    shown = f"containment: {name}"
    if name == "tags":
        shown += " (no cgroups: setsid'd descendants that lose their environment can escape)"
    return click.style(shown, dim=True)


# ---- start / stop / restart ----------------------------------------------------------------------


def _act(connection: Connection, action: str, process_id: str) -> str:
    answer = connection.request("POST", process_path(process_id, action), timeout=ACTION_TIMEOUT)
    return str(answer.get("message", "done"))


def run_action(connection: Connection, action: str, target: str) -> None:
    """``target`` is an id, or ``all``: every process, acted on in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    if target != "all":
        try:
            message = _act(connection, action, target)
        except ClientError as exc:
            raise (unknown_id(target) if exc.status == 404 else exc) from None
        click.echo(f"{target}: {message}")
        return
    states = connection.request("GET", "/api/pm/list")
    if action == "start":
        states = [state for state in states if state["status"] not in ("running", "starting")]
    failures = 0
    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [(state["id"], pool.submit(_act, connection, action, state["id"])) for state in states]
        for process_id, future in futures:
            try:
                click.echo(f"{process_id}: {future.result()}")
            except ClientError as exc:
                if isinstance(exc, Unreachable | Unauthorised):
                    raise
                failures += 1
                click.echo(f"{process_id}: {exc.message}", err=True)
    if not futures:
        click.echo("nothing to do")
    if failures:
        raise ClientError(f"{failures} of {len(futures)} processes failed to {action}")


def _action_command(action: str, summary: str) -> click.Command:
    @click.command(action, help=f"{summary} a process by id; `all` means every process.")
    @click.argument("process_id", metavar="ID|all")
    @connection_options
    def command(process_id: str, url: str, token: str | None, data_dir: Path) -> None:
        run_action(connect(url, token, data_dir), action, process_id)

    return command


@click.command("signal")
@click.argument("process_id", metavar="ID|all")
@click.argument("signal_name", metavar="SIGNAL")
@click.option("--tree", is_flag=True, help="Every process of the tree, not only the main process.")
@click.option("--force", is_flag=True, help="Allow SIGKILL and SIGSTOP, which bypass the stop ladder.")
@connection_options
def signal_command(
    process_id: str, signal_name: str, tree: bool, force: bool, url: str, token: str | None, data_dir: Path
) -> None:
    """Send a signal (HUP, USR1, SIGQUIT...) to a process's main process; `all` means every running
    process. gunicorn reloads its workers on HUP, nginx stops gracefully on QUIT."""
    connection = connect(url, token, data_dir)
    body = {"signal": signal_name, "tree": tree, "force": force}
    if process_id != "all":
        targets = [process_id]
    else:
        states = connection.request("GET", "/api/pm/list")
        targets = [state["id"] for state in states if state.get("pid")]
        if not targets:
            click.echo("nothing to do: no process is running")
            return
    failures = 0
    for target in targets:
        try:
            answer = connection.request("POST", process_path(target, "signal"), json_body=body)
        except ClientError as exc:
            if exc.status == 404:
                raise unknown_id(target) from None
            if process_id != "all" or isinstance(exc, Unreachable | Unauthorised):
                raise
            failures += 1
            click.echo(f"{target}: {exc.message}", err=True)
            continue
        sent, count = answer.get("signal", signal_name), answer.get("processes", "?")
        click.echo(f"{target}: {sent} sent to {count} process(es)")
    if failures:
        raise ClientError(f"{failures} of {len(targets)} processes could not be signalled")


start_command = _action_command("start", "Start")
stop_command = _action_command("stop", "Stop")
restart_command = _action_command("restart", "Restart")


# ---- logs ----------------------------------------------------------------------------------------


def local_time(timestamp: str) -> str:
    """``HH:MM:SS`` in local time from the API's UTC timestamp."""
    try:
        return datetime.fromisoformat(timestamp).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return timestamp


def format_line(line: dict[str, Any]) -> str:
    """``12:00:01 web | text``: ``!`` marks stderr, ``~`` (dimmed) processman's own notes."""
    stamp = local_time(str(line.get("timestamp", "")))
    stream = str(line.get("stream"))
    content = terminal_safe(str(line.get("content", "")))
    note = as_system_note(stream, (content,))
    if note is not None:
        bar, content = click.style(SYSTEM_BAR, dim=True), click.style(note[0], dim=True)
    else:
        bar = click.style("!", fg="red", bold=True) if stream == "stderr" else "|"
    return f"{stamp} {terminal_safe(str(line.get('processId', '')))} {bar} {content}"


def follow_events(connection: Connection, process_id: str, lines: int) -> Iterator[ServerSentEvent]:
    """The events of the live log stream. A dropped connection is resumed from the last line received
    (``Last-Event-ID``) for a few seconds before giving up, so a server restart loses nothing kept."""
    import httpx

    parser = EventParser()
    path = process_path(process_id, "logs")
    gone_since: float | None = None
    with connection.client(timeout=None) as client:
        while True:
            headers = {"Last-Event-ID": parser.last_id} if parser.last_id else {}
            try:
                params = {"follow": 1, "lines": lines}
                with client.stream("GET", path, params=params, headers=headers) as reply:
                    connection.check_reply(reply)
                    gone_since = None
                    for text in reply.iter_lines():
                        event = parser.feed(text)
                        if event is not None:
                            yield event
            except httpx.TransportError as exc:
                if gone_since is None and parser.last_id is None:
                    raise connection.unreachable(exc) from None
                if gone_since is not None and time.monotonic() - gone_since > RECONNECT_FOR:
                    message = f"lost the connection to {connection.url}: {exc}"
                    raise Unreachable(message) from None
            gone_since = gone_since or time.monotonic()
            time.sleep(0.5)


def follow_realtime(connection: Connection, process_id: str) -> Iterator[dict[str, Any]]:
    """Lines of a process through PocketBase, which cannot pass a stream on: its hooks publish them on
    the realtime topic ``pm/logs/<id>`` to superusers."""
    import httpx

    parser = EventParser()
    topic = f"pm/logs/{process_id}"
    with connection.client(timeout=None) as client:
        try:
            with client.stream("GET", "/api/realtime") as reply:
                connection.check_reply(reply)
                for text in reply.iter_lines():
                    event = parser.feed(text)
                    if event is None:
                        continue
                    if event.event == "PB_CONNECT":
                        client_id = json.loads(event.data)["clientId"]
                        subscription = {"clientId": client_id, "subscriptions": [topic]}
                        connection.check_reply(client.post("/api/realtime", json=subscription))
                    elif event.event == topic:
                        yield from json.loads(event.data)
        except httpx.TransportError as exc:
            raise Unreachable(f"lost the connection to {connection.url}: {exc}") from None


def behind_pocketbase(connection: Connection) -> bool:
    """True when the server is PocketBase running processman's hooks (live streams go over realtime)."""
    try:
        info = connection.request("GET", "/api/pm/auth-info")
    except ClientError:
        return False
    return isinstance(info, dict) and info.get("mode") == "pocketbase"


def print_follow(connection: Connection, process_id: str, lines: int) -> None:
    try:
        for event in follow_events(connection, process_id, lines):
            if event.event == "log":
                click.echo(format_line(json.loads(event.data)))
            elif event.event == "dropped":
                count = json.loads(event.data).get("count", "?")
                notice = f"... {count} lines were lost (no longer in the buffer)"
                click.echo(click.style(notice, fg="yellow"), err=True)
    except ClientError as exc:
        if exc.status != 400 or not behind_pocketbase(connection):
            raise
        # PocketBase: the last lines from the API, then new ones from realtime. Lines written while
        # this switches over may be missed: realtime messages carry no sequence number to resume from.
        for line in connection.request("GET", process_path(process_id, "logs"), params={"lines": lines}):
            click.echo(format_line(line))
        for line in follow_realtime(connection, process_id):
            click.echo(format_line(line))


class _Stopped(BaseException):
    """SIGINT or SIGTERM arrived while following (a BaseException, as KeyboardInterrupt is)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, _frame: object) -> None:
    raise _Stopped(signum)


def stop_on_signals() -> None:
    """Make SIGINT and SIGTERM end ``logs -f``, whatever this process inherited: a background job of a
    non-interactive shell starts with SIGINT ignored (and ``nohup``-like wrappers ignore more)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _raise_stopped)


@click.command("logs")
@click.argument("process_id", metavar="ID")
@click.option(
    "-n", "--lines", type=click.IntRange(0, 1000), default=100, show_default=True, help="Last lines."
)
@click.option(
    "-f", "--follow", is_flag=True, help="Keep printing new lines until Ctrl+C (exit 130) or SIGTERM (143)."
)
@connection_options
def logs_command(
    process_id: str, lines: int, follow: bool, url: str, token: str | None, data_dir: Path
) -> None:
    """Print the last lines of a process's output, oldest first; -f follows it live."""
    connection = connect(url, token, data_dir)
    try:
        if not follow:
            for line in connection.request("GET", process_path(process_id, "logs"), params={"lines": lines}):
                click.echo(format_line(line))
            return
        stop_on_signals()
        print_follow(connection, process_id, lines)
    except ClientError as exc:
        raise (unknown_id(process_id) if exc.status == 404 else exc) from None
    except _Stopped as stopped:
        sys.exit(128 + stopped.signum)
    except KeyboardInterrupt:
        sys.exit(130)


# ---- reload --------------------------------------------------------------------------------------


@click.command("reload")
@connection_options
@click.option("--dry-run", is_flag=True, help="Only show what would change.")
def reload_command(url: str, token: str | None, data_dir: Path, dry_run: bool) -> None:
    """Apply the changed config file: add, remove and restart only what changed."""
    query = "?dryRun=1" if dry_run else ""
    plan = connect(url, token, data_dir).request("POST", f"/api/pm/reload{query}", timeout=ACTION_TIMEOUT)
    for label, key in (("added", "added"), ("removed", "removed"), ("unchanged", "unchanged")):
        if plan.get(key):
            click.echo(f"{label}: {', '.join(plan[key])}")
    for process_id, diff in plan.get("changed", {}).items():
        fields = ", ".join(f"{name} {change['old']!r} -> {change['new']!r}" for name, change in diff.items())
        click.echo(f"changed: {process_id} ({fields})")
    if not (plan.get("added") or plan.get("removed") or plan.get("changed")):
        click.echo("nothing to change")
    elif dry_run:
        click.echo("(dry run: nothing was changed)")
