"""Credentials (SPEC 10): the admin token, the hooks' shared secret, PocketBase superusers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.datastructures import Headers

from processman import ProcessManager
from processman.api import AdminToken, AnyOf, PocketBaseSuperuser, SharedSecret, Verdict
from processman.api.auth import authorization_token
from tests.api.conftest import TOKEN, PocketBase, Served, assert_error, free_port, pocketbase, serving
from tests.conftest import config


def headers(**values: str) -> Headers:
    return Headers({name.replace("_", "-"): value for name, value in values.items()})


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer   abc ", "abc"),
        ("abc", "abc"),
        ("Bearer", None),
        ("", None),
        ("Basic dXNlcjpwYXNz", "Basic dXNlcjpwYXNz"),
    ],
)
def test_authorization_token_accepts_bearer_and_bare(value: str, token: str | None) -> None:
    assert authorization_token(headers(authorization=value)) == token


async def test_admin_token_compares_exactly() -> None:
    auth = AdminToken("s3cret-token")
    assert await auth.authenticate(headers(authorization="Bearer s3cret-token")) is Verdict.ALLOWED
    assert await auth.authenticate(headers(authorization="s3cret-token")) is Verdict.ALLOWED
    for wrong in ("Bearer s3cret-toke", "Bearer s3cret-token2", "Bearer S3CRET-TOKEN", "Bearer \xe9t\xe9"):
        assert await auth.authenticate(headers(authorization=wrong)) is Verdict.UNAUTHORIZED
    assert await auth.authenticate(headers()) is Verdict.UNAUTHORIZED
    assert "s3cret" not in repr(auth)
    with pytest.raises(ValueError, match="must not be empty"):
        AdminToken("")


async def test_shared_secret_reads_only_its_header() -> None:
    auth = SharedSecret("hook-secret")
    assert await auth.authenticate(headers(x_pm_secret="hook-secret")) is Verdict.ALLOWED
    assert await auth.authenticate(headers(authorization="Bearer hook-secret")) is Verdict.UNAUTHORIZED
    assert await auth.authenticate(headers(x_pm_secret="other")) is Verdict.UNAUTHORIZED
    assert auth.mode == "pocketbase" and "hook-secret" not in repr(auth)


async def test_no_token_or_a_wrong_one_is_401(served: Served) -> None:
    for value in (None, "", "Bearer wrong", "wrong", f"Bearer {TOKEN}x", f"Basic {TOKEN}"):
        sent = {} if value is None else {"Authorization": value}
        async with httpx.AsyncClient(base_url=served.url, headers=sent) as client:
            response = await client.get("/api/pm/list")
            assert response.status_code == 401, value
            assert response.json() == {
                "status": 401,
                "message": "The request requires valid record authorization token.",
                "data": {},
            }
            assert response.headers["www-authenticate"].startswith("Bearer")
            action = await client.post("/api/pm/idle/stop")
            assert action.status_code == 401
    assert served.manager.state("idle").pid > 0, "a refused request must not act"


async def test_unknown_routes_are_401_before_404_without_a_token(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url) as client:
        assert (await client.get("/api/pm/nope/logs")).status_code == 401
        assert (await client.get("/api/pm/anything")).status_code == 401


async def test_bearer_and_bare_tokens_are_both_accepted(served: Served) -> None:
    for value in (f"Bearer {TOKEN}", TOKEN):
        async with httpx.AsyncClient(base_url=served.url, headers={"Authorization": value}) as client:
            assert (await client.get("/api/pm/list")).status_code == 200


async def test_auth_info_and_openapi_are_public(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url) as client:
        info = await client.get("/api/pm/auth-info")
        assert info.status_code == 200 and info.json() == {"mode": "token"}
        document = await client.get("/api/pm/openapi.json")
        assert document.status_code == 200 and document.json()["openapi"].startswith("3.")


async def test_shared_secret_over_http(manager_factory: Callable[..., ProcessManager]) -> None:
    manager = manager_factory(config("idle", "import time; time.sleep(3600)"))
    await manager.start()
    async with (
        serving(manager, SharedSecret("hook-secret")) as service,
        httpx.AsyncClient(base_url=service.url) as c,
    ):
        ok = await c.get("/api/pm/list", headers={"X-PM-Secret": "hook-secret", "X-PM-User": "_superusers:x"})
        assert ok.status_code == 200
        assert (await c.get("/api/pm/list", headers={"Authorization": "hook-secret"})).status_code == 401
        assert (await c.get("/api/pm/auth-info")).json() == {"mode": "pocketbase"}


# ---- PocketBase superusers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_pocketbase(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PocketBase]:
    with pocketbase(tmp_path_factory.mktemp("pocketbase")) as instance:
        yield instance


@pytest.mark.pocketbase
async def test_pocketbase_superuser_user_and_garbage_tokens(
    real_pocketbase: PocketBase, manager_factory: Callable[..., ProcessManager]
) -> None:
    manager = manager_factory(config("idle", "import time; time.sleep(3600)"))
    await manager.start()
    authenticator = AnyOf(AdminToken(TOKEN), PocketBaseSuperuser(real_pocketbase.url))
    async with serving(manager, authenticator) as service, httpx.AsyncClient(base_url=service.url) as client:

        async def get(value: str | None) -> httpx.Response:
            sent = {} if value is None else {"Authorization": value}
            return await client.get("/api/pm/list", headers=sent)

        superuser = real_pocketbase.superuser_token
        assert (await get(superuser)).status_code == 200
        assert (await get(f"Bearer {superuser}")).status_code == 200
        assert (await get(TOKEN)).status_code == 200

        user = await get(real_pocketbase.user_token)
        assert user.status_code == 403
        assert user.json() == {
            "status": 403,
            "message": "The authorized record is not allowed to perform this action.",
            "data": {},
        }
        assert (
            await client.post("/api/pm/idle/stop", headers={"Authorization": real_pocketbase.user_token})
        ).status_code == 403
        assert manager.state("idle").pid > 0

        garbage = await get("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.bm9wZQ")
        assert garbage.status_code == 401
        assert_error(garbage.json(), 401)
        assert (await get(None)).status_code == 401
        assert (await client.get("/api/pm/auth-info")).json() == {"mode": "pocketbase"}


@pytest.mark.pocketbase
async def test_pocketbase_verdicts_are_cached_briefly(tmp_path: Path) -> None:
    with pocketbase(tmp_path) as instance:
        auth = PocketBaseSuperuser(instance.url, cache_seconds=30)
        superuser = headers(authorization=instance.superuser_token)
        assert await auth.authenticate(superuser) is Verdict.ALLOWED
        assert await auth.authenticate(headers(authorization=instance.user_token)) is Verdict.FORBIDDEN
        instance.process.terminate()
        await asyncio.to_thread(instance.process.wait, 10)
        # PocketBase is gone: the cached verdicts still hold, an unseen token cannot be checked.
        assert await auth.authenticate(superuser) is Verdict.ALLOWED
        assert await auth.authenticate(headers(authorization=instance.user_token)) is Verdict.FORBIDDEN
        assert await auth.authenticate(headers(authorization="never-seen")) is Verdict.UNAVAILABLE
        await auth.aclose()


async def test_an_unreachable_pocketbase_is_503_with_a_reason(
    manager_factory: Callable[..., ProcessManager],
) -> None:
    manager = manager_factory(config("idle", "import time; time.sleep(3600)"))
    await manager.start()
    authenticator = AnyOf(AdminToken(TOKEN), PocketBaseSuperuser(f"http://127.0.0.1:{free_port()}"))
    async with serving(manager, authenticator) as service, httpx.AsyncClient(base_url=service.url) as client:
        response = await client.get("/api/pm/list", headers={"Authorization": "some-pocketbase-token"})
        assert response.status_code == 503
        assert_error(response.json(), 503)
        assert "PocketBase is unreachable" in response.json()["message"]
        # The admin token does not depend on PocketBase.
        assert (await client.get("/api/pm/list", headers={"Authorization": TOKEN})).status_code == 200
