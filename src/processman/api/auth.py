"""Who may use the control API (SPEC 10).

An :class:`Authenticator` looks at a request's headers and answers with a :class:`Verdict`. The
implementations combine: ``processman serve`` accepts its admin token and, with ``--pocketbase-url``,
any PocketBase superuser token::

    AnyOf(AdminToken(token), PocketBaseSuperuser("http://127.0.0.1:8090"))

Behind PocketBase's hooks, which check the superuser themselves, the supervisor accepts only the
hooks' shared secret: ``SharedSecret(secret)``.

Secrets are compared in constant time. Tokens arrive as ``Authorization: Bearer <token>`` or, as
PocketBase's own clients send them, as a bare ``Authorization: <token>``.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
import logging
import re
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

from starlette.datastructures import Headers

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

Mode = Literal["token", "pocketbase"]

# What a PocketBase token (a JWT) can be made of; anything else is refused without asking PocketBase
# (httpx cannot even send a header with other characters).
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9._~+/=-]{1,4096}")


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    UNAUTHORIZED = "unauthorized"  # 401: no credential, or not one we accept
    FORBIDDEN = "forbidden"  # 403: a valid identity that is not a superuser
    UNAVAILABLE = "unavailable"  # 503: the credential could not be checked (PocketBase unreachable)


class Authenticator(Protocol):
    """Decides whether a request may use the API.

    ``mode`` tells the dashboard which login to show: an admin token, or a PocketBase superuser login.
    """

    @property
    def mode(self) -> Mode: ...

    async def authenticate(self, headers: Headers) -> Verdict: ...

    async def aclose(self) -> None: ...


def authorization_token(headers: Headers) -> str | None:
    """The token of ``Authorization: Bearer <token>`` or of a bare ``Authorization: <token>``."""
    value = headers.get("authorization", "").strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer":
        value = rest.strip()
    return value or None


def same_secret(given: str, expected: str) -> bool:
    # Header values are latin-1 text; compare bytes so any input is comparable, in constant time.
    return hmac.compare_digest(given.encode("latin-1", "replace"), expected.encode("utf-8"))


class AdminToken:
    """The manager's own admin token (``PROCESSMAN_TOKEN`` or the generated token file)."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the admin token must not be empty")
        self._token = token

    def __repr__(self) -> str:
        return "AdminToken('****')"

    @property
    def mode(self) -> Mode:
        return "token"

    async def authenticate(self, headers: Headers) -> Verdict:
        given = authorization_token(headers)
        if given is not None and same_secret(given, self._token):
            return Verdict.ALLOWED
        return Verdict.UNAUTHORIZED

    async def aclose(self) -> None:
        pass


class SharedSecret:
    """A secret in a header of its own, set by a trusted forwarder (PocketBase's hooks: ``X-PM-Secret``)."""

    def __init__(self, secret: str, header: str = "X-PM-Secret") -> None:
        if not secret:
            raise ValueError("the shared secret must not be empty")
        self._secret = secret
        self.header = header

    def __repr__(self) -> str:
        return f"SharedSecret('****', header={self.header!r})"

    @property
    def mode(self) -> Mode:
        return "pocketbase"

    async def authenticate(self, headers: Headers) -> Verdict:
        given = headers.get(self.header)
        if given is not None and same_secret(given, self._secret):
            return Verdict.ALLOWED
        return Verdict.UNAUTHORIZED

    async def aclose(self) -> None:
        pass


class PocketBaseSuperuser:
    """Any superuser token of the PocketBase at ``url``, verified by that PocketBase.

    The token is checked with ``POST /api/collections/_superusers/auth-refresh``, which answers 200 for
    a superuser, 403 for a valid token of another collection and 401 otherwise. Verdicts are cached for
    ``cache_seconds`` (keyed by a hash of the token), so a busy dashboard costs PocketBase little.
    """

    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float = 10.0,
        timeout: float = 5.0,
        max_cached: int = 1024,
    ) -> None:
        self.url = url.rstrip("/")
        self.cache_seconds = cache_seconds
        self.max_cached = max_cached
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._cache: OrderedDict[bytes, tuple[float, Verdict]] = OrderedDict()

    def __repr__(self) -> str:
        return f"PocketBaseSuperuser({self.url!r})"

    @property
    def mode(self) -> Mode:
        return "pocketbase"

    async def authenticate(self, headers: Headers) -> Verdict:
        token = authorization_token(headers)
        if token is None or not _TOKEN_SHAPE.fullmatch(token):
            return Verdict.UNAUTHORIZED
        key = hashlib.sha256(token.encode("latin-1", "replace")).digest()
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        verdict = await self._verify(token)
        if verdict is not Verdict.UNAVAILABLE:
            # Never past the token's own expiry: a cached "allowed" must not outlive the token.
            lifetime = min(self.cache_seconds, _seconds_left(token))
            self._cache[key] = (now + lifetime, verdict)
            self._cache.move_to_end(key)
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
        return verdict

    async def _verify(self, token: str) -> Verdict:
        import httpx  # here, not at the top: a manager without PocketBase tokens never loads it

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        try:
            response = await self._client.post(
                f"{self.url}/api/collections/_superusers/auth-refresh", headers={"Authorization": token}
            )
        except httpx.HTTPError as exc:
            logger.warning("cannot verify a token with PocketBase at %s: %s", self.url, exc)
            return Verdict.UNAVAILABLE
        if response.status_code == 200:
            return Verdict.ALLOWED
        if response.status_code == 403:
            return Verdict.FORBIDDEN
        if response.status_code in (400, 401, 404):
            return Verdict.UNAUTHORIZED
        logger.warning("PocketBase at %s answered %d to a token check", self.url, response.status_code)
        return Verdict.UNAVAILABLE

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _seconds_left(token: str) -> float:
    """Seconds until the JWT's ``exp`` claim (read, not verified: PocketBase verified the token)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"]) - time.time()
    except (IndexError, ValueError, KeyError, TypeError, binascii.Error):
        return float("inf")


class AnyOf:
    """Allowed when any member allows. Otherwise the most telling refusal: 403 (a known identity
    without the right), then 503 (could not check), then 401."""

    _RANK: ClassVar[dict[Verdict, int]] = {
        Verdict.FORBIDDEN: 0,
        Verdict.UNAVAILABLE: 1,
        Verdict.UNAUTHORIZED: 2,
    }

    def __init__(self, *members: Authenticator) -> None:
        if not members:
            raise ValueError("AnyOf needs at least one authenticator")
        self.members = members

    def __repr__(self) -> str:
        return f"AnyOf({', '.join(map(repr, self.members))})"

    @property
    def mode(self) -> Mode:
        return "pocketbase" if any(member.mode == "pocketbase" for member in self.members) else "token"

    async def authenticate(self, headers: Headers) -> Verdict:
        refusals = []
        for member in self.members:
            verdict = await member.authenticate(headers)
            if verdict is Verdict.ALLOWED:
                return verdict
            refusals.append(verdict)
        return min(refusals, key=self._RANK.__getitem__)

    async def aclose(self) -> None:
        for member in self.members:
            await member.aclose()
