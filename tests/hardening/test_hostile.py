"""Hostile input: a fuzzed config loader, credentials that try to get in, ids that try to get out, huge
bodies, slow-loris clients. No request may start a command that is not in the config."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shlex
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from processman import ProcessManager
from processman.api import AdminToken, AnyOf, PocketBaseSuperuser, Verdict
from processman.config import FIELDS, ConfigProblem, config_to_json, load_config, parse_processes
from processman.engine import cgroups
from tests.api.conftest import (
    TOKEN,
    PocketBase,
    assert_error,
    pocketbase,
    raw_http,
    request_bytes,
    serving,
)
from tests.conftest import config
from tests.hardening.conftest import Record, Scale, tagged

# ---- the config loader, fuzzed -------------------------------------------------------------------


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from([*FIELDS, "maxRetry", "Id", "", "env.PATH", "__proto__"])
plausible = {
    "id": st.sampled_from(["web", "a.b-c_1", "x" * 65, "web\n", "-x", "", "é", "a:1", "a/b", "..", 7]),
    "command": st.sampled_from(["sleep", "tr\0ue", "", "/bin/sh", 0, None, ["sh"]]),
    "script": st.sampled_from(["a.py", "a.ts", "a.js", "", "../../x.py", "a\0.py"]),
    "args": st.lists(st.text(max_size=8), max_size=3) | json_values,
    "cwd": st.sampled_from([".", "..", "/", "no/such/dir", "a\0b", ""]) | json_values,
    "env": st.dictionaries(
        st.text(max_size=6), st.text(max_size=6) | st.integers() | json_values, max_size=3
    ),
    "backoff": st.sampled_from(["1s", "500ms", "1m30s", "0s", "-1s", "1e3s", "1.5.5s", "99999999999999999h"])
    | json_values,
    "maxRetries": st.integers(min_value=-3, max_value=10**20) | json_values,
    "devMode": st.booleans() | json_values,
    "instances": st.integers(min_value=-2, max_value=2000) | json_values,
}


@st.composite
def entries(draw: st.DrawFn) -> Any:
    """Mostly near-valid entries (one or two fields wrong), sometimes anything at all."""
    if draw(st.integers(0, 4)) == 0:
        return draw(json_values)
    entry: dict[str, Any] = {"id": draw(plausible["id"]), "command": "sleep"}
    for name in draw(st.lists(field_names, max_size=4)):
        entry[name] = draw(plausible.get(name, json_values))
    return entry


documents = (
    st.lists(entries(), max_size=5) | st.fixed_dictionaries({"processes": st.lists(entries())}) | json_values
)


def check_problems(problems: tuple[ConfigProblem, ...], file: str) -> None:
    for problem in problems:
        text = str(problem)
        assert text.startswith(f"{file}: ") and problem.where and problem.message
        # One line each, whatever the input: a newline or an escape sequence would forge log lines.
        assert "\n" not in text and "\x1b" not in text and "\r" not in text, text


def test_the_config_loader_never_crashes_and_always_says_what_is_wrong(scale: Scale) -> None:
    @settings(max_examples=scale.pick(200, 5000), deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(documents)
    def load(data: Any) -> None:
        configs, problems = parse_processes(data, file="pb_processes.json", base_dir=Path("/srv/app"))
        check_problems(problems, "pb_processes.json")
        ids = [c.id for c in configs]
        assert len(ids) == len(set(ids))
        for item in configs:
            json.dumps(config_to_json(item))  # reportable as the API reports it
        if not configs and data not in ([], {"processes": []}):
            assert problems, "nothing ran and nothing was said"

    load()


def test_any_file_content_loads_or_says_where_it_is_broken(scale: Scale) -> None:
    @settings(max_examples=scale.pick(100, 2500), deadline=None)
    @given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
    def load(content: bytes) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "pb_processes.json"
            path.write_bytes(content)
            loaded = load_config(path)
        check_problems(loaded.problems, str(path))
        for problem in loaded.problems:
            if problem.line is not None:
                assert problem.where == f"line {problem.line} column {problem.column}"

    load()


# ---- the API: a manager with a canary ------------------------------------------------------------

SLEEP = "import time\ntime.sleep(3600)"
CANARY = Path(tempfile.gettempdir()) / f"processman-canary-{os.getpid()}"


def configured_commands(manager: ProcessManager) -> set[str]:
    return {shlex.join([str(s.config.command), *s.config.args]) for s in manager.states()}


def assert_only_configured_commands(manager: ProcessManager) -> None:
    """Every process of this run is one the config describes (or a descendant of one)."""
    allowed = configured_commands(manager)
    for process in tagged(f"{manager.run_id}:"):
        try:
            argv = process.cmdline()
        except psutil.Error:
            continue
        if argv[:3] == ["/bin/sh", "-c", cgroups.WRAPPER]:
            argv = argv[4:]  # caught while entering its cgroup: the command it is about to exec
        cmdline = shlex.join(argv)
        assert cmdline in allowed, f"a command that is not in the config ran: {cmdline}"
    assert not CANARY.exists(), "a request ran a command of its own"


@pytest.fixture(scope="module")
def real_pocketbase(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PocketBase]:
    with pocketbase(tmp_path_factory.mktemp("pb")) as app:
        yield app


class ExpiryWatch:
    """Uses a superuser token that lives 10 s (PocketBase's shortest lifetime) 3 s before it expires
    and 1 s after, through the same authenticator, in a thread of its own: the 10 s pass while the
    other tests of this module run. The last test of the module reads the verdicts."""

    def __init__(self, app: PocketBase) -> None:
        self.token, self.expires = short_superuser_token(app)
        self.url = app.url
        self.verdicts: list[Verdict] = []
        self.times: list[float] = []  # when each verdict came, in seconds from the expiry
        self.thread = threading.Thread(target=lambda: asyncio.run(self._watch()), daemon=True)
        self.thread.start()

    async def _watch(self) -> None:
        authenticator = PocketBaseSuperuser(self.url)  # caches verdicts for 10 s
        headers = Headers({"authorization": self.token})
        try:
            await asyncio.sleep(max(0.0, self.expires - 3 - time.time()))
            self.verdicts.append(await authenticator.authenticate(headers))
            self.times.append(time.time() - self.expires)
            await asyncio.sleep(max(0.0, self.expires - time.time()) + 1)
            self.verdicts.append(await authenticator.authenticate(headers))
            self.times.append(time.time() - self.expires)
        finally:
            await authenticator.aclose()


@pytest.fixture(scope="module")
def expiry_watch(real_pocketbase: PocketBase) -> ExpiryWatch:
    return ExpiryWatch(real_pocketbase)


def short_superuser_token(real_pocketbase: PocketBase) -> tuple[str, float]:
    """A superuser token that expires in 10 s, and its expiry (epoch seconds)."""
    login = {"identity": "admin@example.com", "password": "Sup3rSecret!pass"}
    headers = {"Authorization": real_pocketbase.superuser_token}
    with httpx.Client(base_url=real_pocketbase.url, timeout=10) as client:
        short = client.patch(
            "/api/collections/_superusers", json={"authToken": {"duration": 10}}, headers=headers
        )
        assert short.status_code == 200, short.text
        token: str = client.post("/api/collections/_superusers/auth-with-password", json=login).json()[
            "token"
        ]
        client.patch(
            "/api/collections/_superusers", json={"authToken": {"duration": 1209600}}, headers=headers
        )
    expires = float(json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["exp"])
    return token, expires


class Api:
    def __init__(self, manager: ProcessManager, port: int, app: PocketBase) -> None:
        self.manager = manager
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.pocketbase = app

    async def get(self, path: str, **options: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, timeout=15) as client:
            return await client.get(path, **options)

    async def raw(self, request: bytes) -> tuple[int, dict[str, Any] | None, bytes]:
        return await raw_http(self.port, request)


@pytest.fixture
async def api(
    manager_factory: Callable[..., ProcessManager],
    real_pocketbase: PocketBase,
    expiry_watch: ExpiryWatch,  # started with the first test of the module
) -> AsyncIterator[Api]:
    manager = manager_factory(config("web", SLEEP), config("idle", SLEEP))
    await manager.start()
    authenticator = AnyOf(AdminToken(TOKEN), PocketBaseSuperuser(real_pocketbase.url))
    # The production deadline for a request to arrive is 10 s and the ceiling 1,000 connections; 2 s
    # keeps the slow-loris test short, and 200 makes its 300 connections go past the ceiling.
    async with serving(manager, authenticator, request_timeout=2.0, max_connections=200) as service:
        yield Api(manager, service.port, real_pocketbase)
    assert_only_configured_commands(manager)


def forged(payload: dict[str, Any], header: dict[str, Any] | None = None, signature: str = "c2ln") -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part(header or {'alg': 'HS256', 'typ': 'JWT'})}.{part(payload)}.{signature}"


async def test_credentials_that_try_to_get_in_are_refused(api: Api) -> None:
    superuser = api.pocketbase.superuser_token
    claims = json.loads(base64.urlsafe_b64decode(superuser.split(".")[1] + "=="))
    attempts: dict[str, dict[str, str] | dict[bytes, bytes]] = {
        "none": {},
        "empty bearer": {"Authorization": "Bearer"},
        "basic": {"Authorization": "Basic " + base64.b64encode(f"admin:{TOKEN}".encode()).decode()},
        "token with a suffix": {"Authorization": f"Bearer {TOKEN}x"},
        "truncated token": {"Authorization": f"Bearer {TOKEN[:-1]}"},
        "token in another header": {"X-PM-Secret": TOKEN, "X-Api-Key": TOKEN, "Cookie": f"token={TOKEN}"},
        "alg none": {"Authorization": forged(claims, {"alg": "none", "typ": "JWT"}, "")},
        "forged signature": {"Authorization": forged(claims)},
        "expired superuser claims": {"Authorization": forged({**claims, "exp": 1})},
        "another collection's token": {"Authorization": api.pocketbase.user_token},
        "non-ASCII token": {b"Authorization": "Bearer t\u00e9st-\u00ff".encode("latin-1")},
        "control characters": {"Authorization": "Bearer \x7f\x01"},
        "10 KiB token": {"Authorization": "Bearer " + "A" * 10_240},
    }
    for name, headers in attempts.items():
        for method, path in (("GET", "/api/pm/list"), ("POST", "/api/pm/web/stop")):
            async with httpx.AsyncClient(base_url=api.url, timeout=15) as client:
                response = await client.request(method, path, headers=headers)
            expected = 403 if name == "another collection's token" else 401
            assert response.status_code == expected, (name, method, response.status_code, response.text)
            assert_error(response.json(), expected)
    # The token in the query string, as some clients send it, is not a credential.
    for query in ("token", "access_token", "Authorization", "auth"):
        response = await api.get("/api/pm/list", params={query: TOKEN})
        assert response.status_code == 401, query
    assert api.manager.state("web").pid > 0, "a refused request acted"


async def test_header_tricks_at_the_http_level(api: Api) -> None:
    good = f"Authorization: Bearer {TOKEN}\r\n"
    cases = {
        # The first Authorization header is the one read: a junk one in front is not skipped.
        "junk first": (f"Authorization: Bearer junk\r\n{good}", 401),
        # Obsolete line folding joins the lines: the same token, so let in.
        "folded over two lines": (f"Authorization: Bearer\r\n {TOKEN}\r\n", 200),
        "NUL in the value": ("Authorization: Bearer \x00" + TOKEN + "\r\n", 400),
        "header name with a space": (f"Authorization : Bearer {TOKEN}\r\n", 400),
        "300 KiB of headers": ("X-Pad: " + "a" * 300_000 + "\r\n" + good, 400),
    }
    for name, (extra, expected) in cases.items():
        request = request_bytes("GET", "/api/pm/list", token=None, extra=extra)
        try:
            status, _, _ = await api.raw(request)
        except ConnectionResetError:  # refused before the request was read to its end
            status = 400
        assert status == expected, (name, status)
    assert (await api.get("/api/pm/list", headers={"Authorization": f"Bearer {TOKEN}"})).status_code == 200


HOSTILE_TARGETS = [
    "/api/pm/..%2F..%2F..%2Fetc%2Fpasswd/logs",
    "/api/pm/%2e%2e/%2e%2e/etc/passwd",
    "/api/pm/../../../etc/passwd",
    "/api/pm/web%2F..%2Fidle/stop",
    "/api/pm/web/../idle/stop",
    "/api/pm/web%00/stop",
    "/api/pm/web%0a/stop",
    "/api/pm/%F0%9F%92%A5/stop",
    "/api/pm/" + "a" * 4000 + "/logs",
    "/api/pm/web;idle/stop",
    "/api/pm/web%3Bidle/stop",
    "/api/pm/%20web/stop",
    "/api/pm/WEB/stop",
    "/..%2F..%2Fpyproject.toml",
    "/%2e%2e/%2e%2e/pyproject.toml",
    "/static/../../../pyproject.toml",
    "/api/pm/web/logs/../../idle/stop",
]


async def test_ids_and_paths_that_try_to_get_out(api: Api) -> None:
    pids = {s.id: s.pid for s in api.manager.states()}
    for target in HOSTILE_TARGETS:
        method = "POST" if target.endswith("/stop") else "GET"
        status, body, raw = await api.raw(request_bytes(method, target))
        assert status in (400, 404, 405), (target, status)
        assert b"root:" not in raw and b"[project]" not in raw, target
        if body is not None:
            assert_error(body, status)
            assert "web" not in body["message"] and "passwd" not in body["message"]
    assert {s.id: s.pid for s in api.manager.states()} == pids, "a hostile path acted on a process"


async def test_huge_bodies_are_refused_early(api: Api, figures: Record) -> None:
    declared = request_bytes(
        "POST",
        "/api/pm/web/restart",
        extra="Content-Length: 10000000000\r\nContent-Type: application/json\r\n",
    )
    status, body, _ = await api.raw(declared)
    assert status == 413
    assert_error(body, 413)
    # Chunked, no length given: cut off once past the limit, without reading the rest.
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    writer.write(request_bytes("POST", "/api/pm/web/restart", extra="Transfer-Encoding: chunked\r\n"))
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024)
    answer = asyncio.create_task(reader.readline())
    sent = 0
    try:
        while sent < 10 * 1024 * 1024 and not answer.done():
            writer.write(chunk)
            await writer.drain()
            sent += 64 * 1024
            await asyncio.sleep(0.005)  # a client that reads while it sends sees the answer
        status_line = await asyncio.wait_for(answer, 10)
    except OSError:  # reset: the server closed without reading what was still coming
        status_line = b"reset"
    finally:
        answer.cancel()
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 413") or status_line == b"reset", status_line
    assert sent < 1024 * 1024, f"{sent} bytes were taken before the body was refused"
    assert api.manager.state("web").restart_count == 0
    figures("chunked 10 MiB body, no length", f"refused with 413 after {sent // 1024} KiB were sent")


async def test_slow_loris_clients_do_not_hold_the_api(api: Api, scale: Scale, figures: Record) -> None:
    """Hundreds of connections, more than the server keeps open, that trickle a request and never
    finish it. Others are still served at once (the longest waiting make room), and the server closes
    the slow ones itself once their time is up."""
    count = scale.pick(300, 1000)
    writers: list[asyncio.StreamWriter] = []
    readers: list[asyncio.StreamReader] = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        writer.write(b"GET /api/pm/list HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        readers.append(reader)
        writers.append(writer)
    try:
        began = time.monotonic()
        response = await api.get("/api/pm/list", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200
        served_in = time.monotonic() - began
        # Keep trickling: a byte a second is what slow-loris sends to look alive.
        closed_after = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for writer in writers:
                if not writer.is_closing():
                    writer.write(b"a")
            await asyncio.sleep(1)
            if all(reader.at_eof() for reader in readers):
                closed_after = time.monotonic() - began
                break
        assert closed_after is not None, "the server keeps slow-loris connections open forever"
    finally:
        for writer in writers:
            writer.close()
    figures(
        f"slow-loris: {count} connections trickling a header",
        f"a normal request still served in {served_in * 1000:.0f} ms; the server closed them all "
        f"after {closed_after:.0f} s",
    )


async def test_no_request_runs_a_command_of_its_own(api: Api) -> None:
    touch = f"touch {CANARY}"
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    attempts = [
        ("POST", "/api/pm/web/start", {"command": touch, "args": [touch]}),
        ("POST", "/api/pm/web/restart", {"config": {"command": "touch", "args": [str(CANARY)]}}),
        ("POST", "/api/pm/canary/start", {"id": "canary", "command": "touch", "args": [str(CANARY)]}),
        ("POST", f"/api/pm/{touch}/start", None),
        ("POST", "/api/pm/web;touch/restart", None),
        ("POST", "/api/pm/$(touch%20x)/start", None),
        ("PUT", "/api/pm/canary", {"command": "touch"}),
        ("POST", "/api/pm/list", {"command": "touch"}),
        ("POST", "/api/pm/reload", {"processes": [{"id": "canary", "command": "touch"}]}),
        ("PATCH", "/api/pm/web", {"command": "touch"}),
    ]
    async with httpx.AsyncClient(base_url=api.url, headers=headers, timeout=30) as client:
        for method, path, body in attempts:
            response = await client.request(method, path, content=json.dumps(body) if body else None)
            assert response.status_code < 500, (method, path, response.status_code)
        for param in ("command", "cmd", "exec", "args"):
            await client.post("/api/pm/idle/restart", params={param: touch})
    assert api.manager.ids == ["web", "idle"]
    assert_only_configured_commands(api.manager)


def test_an_expired_superuser_token_stops_working_when_it_expires(expiry_watch: ExpiryWatch) -> None:
    """Allowed 3 s before it expires (and cached for 10 s from then); refused 1 s after: a cached
    verdict must not outlive the token."""
    expiry_watch.thread.join(timeout=30)
    verdicts = list(zip(expiry_watch.verdicts, expiry_watch.times, strict=True))
    assert expiry_watch.verdicts == [Verdict.ALLOWED, Verdict.UNAUTHORIZED], verdicts
