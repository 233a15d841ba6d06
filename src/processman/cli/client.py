"""Client commands that talk to a running ``processman serve`` over HTTP, in the style of pm2 and
supervisorctl: ``list``, ``start``/``stop``/``restart`` (an id, or ``all``), ``logs [-f]``.

The server is ``--url`` or ``$PROCESSMAN_URL``, else the one ``serve`` recorded in its data folder
(``DATA_DIR/processman/server.json``): ``--dir``'s, or without ``--dir`` ``./pb_data``, ``.`` or a
folder here (``serve --dir examples`` is found from the app's folder), else http://127.0.0.1:8091. The
token is ``--token`` or ``$PROCESSMAN_TOKEN``, else the file ``serve`` wrote in the same data folder.
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
from processman.serverfile import SERVER_FILE, ServerRecord, read_server_file, server_path
from processman.sse import EventParser, ServerSentEvent
from processman.tokenfile import TOKEN_ENV, read_token, token_path

if TYPE_CHECKING:
    import ssl

    import httpx

DEFAULT_URL = "http://127.0.0.1:8091"
GROUP_PREFIX = "group:"  # "group:NAME" stands for every process of a group, as the API takes it
DEFAULT_LINES = 100
MAX_LINES = 1000  # the lines the server keeps per process
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
    "completed": {"fg": "green", "dim": True},
    "scheduled": {"fg": "blue"},
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
    if process_id.startswith(GROUP_PREFIX):
        group = shown.removeprefix(GROUP_PREFIX)
        return ClientError(f"no process is in group {group!r} (see `processman list`)", status=404)
    return ClientError(f"unknown process id {shown!r} (see `processman list`)", status=404)


def tls_context() -> ssl.SSLContext:
    """The certificates an https:// server is checked against: certifi's, as httpx does by default."""
    import ssl

    import certifi

    return ssl.create_default_context(cafile=certifi.where())


@dataclass
class Connection:
    """Where the server is and how to prove who we are; ``token_source`` is said in auth errors, and
    ``found`` (how the server was looked for) when it cannot be reached."""

    url: str
    token: str | None
    token_source: str
    found: str = ""
    pocketbase: bool = False  # found as PocketBase's address: its token is a superuser's

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
        if not self.found:
            return Unreachable(
                f"cannot reach the processman server at {self.url} ({exc}); is `processman serve` "
                f"running? (set --url or ${URL_ENV} for another address)"
            )
        return Unreachable(
            f"cannot reach the processman server at {self.url} ({exc}); {self.found}: is `processman "
            f"serve` running? Pass --dir DATA_DIR (the folder given to `serve --dir`) or --url"
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
        if self.token is None and self.pocketbase:
            return (
                f"no token: {self.url} is PocketBase ({self.found}); pass --token with a superuser's "
                f"token or set ${TOKEN_ENV}"
            )
        if self.token is None:
            return (
                f"no token ({self.token_source}); pass --dir DATA_DIR (the folder given to `serve --dir`), "
                f"--token or set ${TOKEN_ENV}"
            )
        return f"the server refused the token from {self.token_source}"


def connection_options(command: F) -> F:
    options = [
        click.option(
            "--url",
            envvar=URL_ENV,
            default=None,
            help=f"Server address [${URL_ENV}; default: the one recorded in the data folder, "
            f"else {DEFAULT_URL}].",
        ),
        click.option("--token", envvar=TOKEN_ENV, default=None, help=f"API token [${TOKEN_ENV}]."),
        click.option(
            "--dir",
            "data_dir",
            type=click.Path(path_type=Path, file_okay=False),
            default=None,
            help="Data folder of the server (as given to `serve --dir`): its address and token are read "
            "there. Default: ./pb_data, the current folder, or a folder here holding a running server's.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


DEFAULT_DIR = Path("pb_data")


def _data_dirs(data_dir: Path | None) -> list[Path]:
    """Where a server's data folder may be: ``--dir``, else ./pb_data, the current folder and the
    folders here that hold a server file (an app started with ``serve --dir examples``)."""
    if data_dir is not None:
        return [data_dir]
    found = [DEFAULT_DIR, Path(".")]
    found.extend(sorted(path.parent.parent for path in Path(".").glob(f"*/processman/{SERVER_FILE}")))
    unique: dict[Path, Path] = {}
    for folder in found:
        unique.setdefault(folder.absolute(), folder)
    return list(unique.values())


def find_server(data_dir: Path | None) -> tuple[Path | None, ServerRecord | None, str]:
    """The data folder of a running server and its record, or (None, None); and how it was looked for,
    for the messages."""
    folders = _data_dirs(data_dir)
    running = []
    for folder in folders:
        record = read_server_file(server_path(folder))
        if record is not None and record.alive:
            running.append((folder, record))
    if len(running) > 1:
        shown = ", ".join(f"{folder} ({record.url})" for folder, record in running)
        raise ClientError(f"several servers run here: {shown}; pass --dir DATA_DIR to choose")
    if running:
        folder, record = running[0]
        return folder, record, f"the server recorded in {_shown_path(server_path(folder))}"
    shown = ", ".join(_shown_path(server_path(folder)) for folder in folders)
    return None, None, f"no running server is recorded in {shown}"


def _shown_path(path: Path) -> str:
    return str(path) if path.is_absolute() or str(path).startswith(".") else f"./{path}"


def connect(url: str | None, token: str | None, data_dir: Path | None) -> Connection:
    folder: Path | None = None
    found = ""
    pocketbase = False
    if url is None:
        folder, record, found = find_server(data_dir)
        url = record.url if record is not None else DEFAULT_URL
        pocketbase = record is not None and record.pocketbase
    url = url.rstrip("/")
    parts = urlsplit(url)
    try:
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number
        valid = False
    if not valid:
        raise click.BadParameter(f"expected an http:// or https:// URL, got {url!r}", param_hint="--url")
    if token:
        return Connection(url, token, f"--token or ${TOKEN_ENV}", found, pocketbase)
    path = token_path(folder or data_dir or DEFAULT_DIR)
    token_found = None if pocketbase else read_token(path)
    source = f"the file {path}" if token_found else f"none given, and no token file at {path}"
    return Connection(url, token_found, source, found, pocketbase)


def process_path(process_id: str, action: str) -> str:
    return f"/api/pm/{quote(process_id, safe='')}/{action}"


# ---- list ----------------------------------------------------------------------------------------


def format_table(states: list[dict[str, Any]], width: int) -> list[str]:
    """The rows of ``processman list``: id, status, pid, uptime, restarts, and a job's next run and the
    last error or, when there are none, what the process says it is doing (sd_notify STATUS=), cut to
    fit."""
    headers = ("ID", "STATUS", "PID", "UPTIME", "RESTARTS", "LAST ERROR / STATUS TEXT")
    rows = [
        (
            str(state["id"]),
            str(state["status"]),
            str(state["pid"]) if state.get("pid") else "-",
            str(state.get("uptime") or "-") if state.get("pid") else "-",
            str(state.get("restartCount", 0)),
            " ".join(terminal_safe(_remark(state)).split()),
        )
        for state in states
    ]
    errors = [bool(state.get("lastError")) for state in states]
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
        if index > 0 and error and errors[index - 1]:
            error = click.style(error, fg="red")
        elif index == 0:
            error = click.style(error, bold=True)
        lines.append("  ".join([*cells, error]).rstrip())
    return lines


def _remark(state: dict[str, Any]) -> str:
    """The last column of ``list``: a job's next run and the last error, else the status text."""
    said = [next_run_text(state.get("nextRun")), str(state.get("lastError") or "")]
    return " · ".join(filter(None, said)) or str(state.get("statusText") or "")


def next_run_text(timestamp: Any, now: float | None = None) -> str:
    """``next run 03:00:00 CET (in 4h12m)`` for a job's ``nextRun`` (another day: with its date); "" for
    none."""
    if not timestamp:
        return ""
    try:
        when = datetime.fromisoformat(str(timestamp)).astimezone()
    except ValueError:
        return ""
    current = datetime.fromtimestamp(time.time() if now is None else now).astimezone()
    # In the machine's time, named: a job's own timezone may differ (describe shows the schedule's).
    shown = when.strftime("%H:%M:%S %Z" if when.date() == current.date() else "%Y-%m-%d %H:%M:%S %Z")
    left = max(0, int(when.timestamp() - current.timestamp()))
    hours, rest = divmod(left, 3600)
    minutes, seconds = divmod(rest, 60)
    wait = f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"
    return f"next run {shown} (in {wait})"


@click.command("list")
@click.argument("group", metavar="[group:NAME]", required=False)
@connection_options
@click.option("--json", "as_json", is_flag=True, help="Print the server's JSON as is.")
def list_command(
    group: str | None, url: str | None, token: str | None, data_dir: Path | None, as_json: bool
) -> None:
    """Show every process (or a group's): id, status, pid, uptime, restarts and last error."""
    params: dict[str, str | int] | None = None
    if group is not None:
        if not group.startswith(GROUP_PREFIX) or group == GROUP_PREFIX:
            raise click.BadParameter(f"expected group:NAME, got {group!r}", param_hint="group")
        params = {"group": group.removeprefix(GROUP_PREFIX)}
    connection = connect(url, token, data_dir)
    states = connection.request("GET", "/api/pm/list", params=params)
    if as_json:
        click.echo(json.dumps(states, indent=2))
        return
    if not states:
        if group:
            click.echo(f"no process is in {group}")
            return
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
    message = str(answer.get("message", "done"))
    if isinstance(answer.get("ids"), list):  # a group: the processes acted on
        message += f" ({', '.join(map(str, answer['ids'])) or 'none'})"
    return message


def run_action(connection: Connection, action: str, target: str) -> None:
    """``target`` is an id, ``group:NAME`` (the server acts on every member at once), or ``all``: every
    process, acted on in parallel."""
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
    @click.command(action, help=f"{summary} a process by id, `group:NAME` or `all` (every process).")
    @click.argument("process_id", metavar="ID|group:NAME|all")
    @connection_options
    def command(process_id: str, url: str | None, token: str | None, data_dir: Path | None) -> None:
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


class FollowPrinter:
    """Prints followed lines. A partial line (the latest state of a progress bar) is redrawn in place on
    a terminal, and erased by the next line; elsewhere (a pipe, a file) only finished lines are printed."""

    ERASE = "\r\x1b[K"

    def __init__(self, terminal: bool | None = None) -> None:
        self.terminal = sys.stdout.isatty() if terminal is None else terminal
        self.drawn = False

    def __call__(self, line: dict[str, Any]) -> None:
        if line.get("partial"):
            if self.terminal:
                prefix = format_line({**line, "content": ""})
                room = shutil.get_terminal_size().columns - len(click.unstyle(prefix)) - 1
                content = terminal_safe(str(line.get("content", "")))[: max(room, 0)]
                click.echo(self.ERASE + prefix + content, nl=False, color=True)  # only on a terminal
                self.drawn = True
            return
        if self.drawn:
            click.echo(self.ERASE, nl=False, color=True)
            self.drawn = False
        click.echo(format_line(line))


def follow_events(connection: Connection, path: str, lines: int) -> Iterator[ServerSentEvent]:
    """The events of the live log stream at ``path``. A dropped connection is resumed from the last
    line received (``Last-Event-ID``) for a few seconds before giving up, so a server restart loses
    nothing kept. A merged stream (several processes) has no event ids: it is resumed from then on."""
    import httpx

    parser = EventParser()
    gone_since: float | None = None
    received = False
    with connection.client(timeout=None) as client:
        while True:
            headers = {"Last-Event-ID": parser.last_id} if parser.last_id else {}
            try:
                backlog = 0 if received and not parser.last_id else lines  # never the same lines twice
                params = {"follow": 1, "lines": backlog}
                with client.stream("GET", path, params=params, headers=headers) as reply:
                    connection.check_reply(reply)
                    gone_since = None
                    for text in reply.iter_lines():
                        event = parser.feed(text)
                        if event is not None:
                            received = True
                            yield event
            except httpx.TransportError as exc:
                if gone_since is None and parser.last_id is None:
                    raise connection.unreachable(exc) from None
                if gone_since is not None and time.monotonic() - gone_since > RECONNECT_FOR:
                    message = f"lost the connection to {connection.url}: {exc}"
                    raise Unreachable(message) from None
            gone_since = gone_since or time.monotonic()
            time.sleep(0.5)


def follow_realtime(connection: Connection, process_ids: list[str]) -> Iterator[dict[str, Any]]:
    """Lines of processes through PocketBase, which cannot pass a stream on: its hooks publish them on
    the realtime topic ``pm/logs/<id>`` to superusers."""
    import httpx

    parser = EventParser()
    topics = [f"pm/logs/{process_id}" for process_id in process_ids]
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
                        subscription = {"clientId": client_id, "subscriptions": topics}
                        connection.check_reply(client.post("/api/realtime", json=subscription))
                    elif event.event in topics:
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


def _show_all(line: dict[str, Any]) -> bool:
    return True


def print_follow(
    connection: Connection,
    process_id: str | None,
    lines: int,
    keep: Callable[[dict[str, Any]], bool] = _show_all,
) -> None:
    """Print a process's lines (``process_id`` None: every process's, interleaved) as they come; a
    progress bar's line is redrawn in place on a terminal."""
    path = logs_path(process_id)
    show = FollowPrinter()
    try:
        for event in follow_events(connection, path, lines):
            if event.event in ("log", "partial"):
                line = json.loads(event.data)
                if keep(line):
                    show(line)
            elif event.event == "dropped":
                lost = json.loads(event.data)
                whose = f" of {lost['processId']}" if "processId" in lost else ""
                notice = f"... {lost.get('count', '?')} lines{whose} were lost (no longer in the buffer)"
                click.echo(click.style(notice, fg="yellow"), err=True)
    except ClientError as exc:
        if exc.status != 400 or not behind_pocketbase(connection):
            raise
        # PocketBase: the last lines from the API, then new ones from realtime. Lines written while
        # this switches over may be missed: realtime messages carry no sequence number to resume from.
        for line in connection.request("GET", path, params={"lines": lines}):
            if keep(line):
                click.echo(format_line(line))
        for line in follow_realtime(connection, members(connection, process_id)):
            if keep(line):
                show(line)


def logs_path(process_id: str | None) -> str:
    """One process's log (or a group's, ``group:NAME``), or with no id every process's, interleaved."""
    return process_path(process_id, "logs") if process_id else "/api/pm/logs"


def members(connection: Connection, process_id: str | None) -> list[str]:
    """The process ids an id stands for: itself, a group's members, or (None) every process."""
    if process_id and not process_id.startswith(GROUP_PREFIX):
        return [process_id]
    params: dict[str, str | int] | None = None
    if process_id:
        params = {"group": process_id.removeprefix(GROUP_PREFIX)}
    return [str(state["id"]) for state in connection.request("GET", "/api/pm/list", params=params)]


def line_filter(since: str | None, pattern: str | None) -> Callable[[dict[str, Any]], bool] | None:
    """What ``--since`` and ``--grep`` keep (None: every line)."""
    import re

    from processman.durations import parse_duration

    if since is None and pattern is None:
        return None
    cutoff = None
    if since is not None:
        try:
            cutoff = time.time() - parse_duration(since)
        except ValueError:
            expected = f'expected a duration like "30s", "10m" or "2h", got {since!r}'
            raise click.BadParameter(expected, param_hint="--since") from None
    try:
        regex = re.compile(pattern) if pattern is not None else None
    except re.error as exc:
        raise click.BadParameter(f"not a regular expression: {exc}", param_hint="--grep") from None

    def keep(line: dict[str, Any]) -> bool:
        if cutoff is not None:
            try:
                if datetime.fromisoformat(str(line.get("timestamp"))).timestamp() < cutoff:
                    return False
            except ValueError:
                pass
        return regex is None or regex.search(str(line.get("content", ""))) is not None

    return keep


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
@click.argument("process_id", metavar="[ID|group:NAME]", required=False)
@click.option(
    "-n",
    "--lines",
    type=click.IntRange(0, 1000),
    default=None,
    help="Last lines [default: 100; with --since or --grep, of every line kept (1000 per process)].",
)
@click.option(
    "-f", "--follow", is_flag=True, help="Keep printing new lines until Ctrl+C (exit 130) or SIGTERM (143)."
)
@click.option("--since", metavar="DURATION", help="Only lines of the last DURATION: 30s, 10m, 2h.")
@click.option("--grep", "pattern", metavar="REGEX", help="Only lines matching this Python regex.")
@connection_options
def logs_command(
    process_id: str | None,
    lines: int | None,
    follow: bool,
    since: str | None,
    pattern: str | None,
    url: str | None,
    token: str | None,
    data_dir: Path | None,
) -> None:
    """Print the last lines of a process's output, oldest first; -f follows it live. With no id, every
    process's lines, interleaved and prefixed with its id (as `pm2 logs`)."""
    keep = line_filter(since, pattern)
    connection = connect(url, token, data_dir)
    # Filtered: read every line kept, then show the last --lines of those that match.
    fetch = MAX_LINES if keep is not None else (lines if lines is not None else DEFAULT_LINES)
    try:
        if not follow:
            found = connection.request("GET", logs_path(process_id), params={"lines": fetch})
            if keep is not None:
                found = [line for line in found if keep(line)]
                if lines is not None or since is None:
                    found = found[-(lines if lines is not None else DEFAULT_LINES) :] if found else []
            for line in found:
                click.echo(format_line(line))
            return
        stop_on_signals()
        print_follow(connection, process_id, fetch, keep or _show_all)
    except ClientError as exc:
        if exc.status == 404 and process_id:
            raise unknown_id(process_id) from None
        raise
    except _Stopped as stopped:
        sys.exit(128 + stopped.signum)
    except KeyboardInterrupt:
        sys.exit(130)


# ---- reload --------------------------------------------------------------------------------------


@click.command("reload")
@connection_options
@click.option("--dry-run", is_flag=True, help="Only show what would change.")
def reload_command(url: str | None, token: str | None, data_dir: Path | None, dry_run: bool) -> None:
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
