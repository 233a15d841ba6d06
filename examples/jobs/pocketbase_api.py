"""The few PocketBase calls the job scripts make, with the standard library only (so they run in any
Python 3.11+, no virtualenv needed).

processman gives every sidecar of a PocketBase app ``PB_URL``; the superuser's email and password come
from the config's ``envFile`` (``PB_SUPERUSER_EMAIL``, ``PB_SUPERUSER_PASSWORD``).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, NoReturn

TIMEOUT = 60.0  # seconds for one request; a backup of a large data folder answers when it is done


class PocketBaseError(Exception):
    """A request PocketBase refused or could not answer; the message says which and why."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def fail(message: str) -> NoReturn:
    """One clear line on stderr (processman keeps it as the run's last line) and exit code 1."""
    print(f"{os.path.basename(sys.argv[0])}: {message}", file=sys.stderr)
    raise SystemExit(1)


def required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        fail(f"{name} is not set (processman sets PB_URL; the credentials come from the envFile)")
    return value


class PocketBase:
    """A superuser session: JSON in, JSON out, and a new login when the token has expired."""

    def __init__(self, url: str, email: str, password: str) -> None:
        self.url = url.rstrip("/")
        self._credentials = {"identity": email, "password": password}
        self._token = ""

    @classmethod
    def from_environment(cls) -> PocketBase:
        session = cls(required("PB_URL"), required("PB_SUPERUSER_EMAIL"), required("PB_SUPERUSER_PASSWORD"))
        session.login()
        return session

    def login(self) -> None:
        answer = self._send("POST", "/api/collections/_superusers/auth-with-password", self._credentials)
        self._token = answer["token"]

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, query: dict[str, str] | None = None
    ) -> Any:
        """The decoded answer (None for 204). Raises PocketBaseError."""
        if query:
            path = f"{path}?{urllib.parse.urlencode(query)}"
        try:
            return self._send(method, path, body)
        except PocketBaseError as exc:
            if exc.status != 401:
                raise
        self.login()  # a token lives a day: a long-running worker outlives it
        return self._send(method, path, body)

    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self._token:
            request.add_header("Authorization", self._token)
        what = f"{method} {path.partition('?')[0]}"
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise PocketBaseError(f"{what}: HTTP {exc.code}: {_message(exc.read())}", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PocketBaseError(f"{what}: cannot reach PocketBase at {self.url}: {reason}") from None
        return json.loads(raw) if raw else None


def _message(raw: bytes) -> str:
    """PocketBase's error message, with the field errors it names."""
    try:
        answer = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")[:200]
    message = str(answer.get("message", ""))
    fields = answer.get("data") or {}
    if isinstance(fields, dict) and fields:
        details = ", ".join(f"{name}: {error.get('message', error)}" for name, error in fields.items())
        message = f"{message} ({details})"
    return message
