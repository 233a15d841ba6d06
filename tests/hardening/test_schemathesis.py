"""The HTTP API fuzzed from its own OpenAPI description (``/api/pm/openapi.json``) with Schemathesis,
against a real ``processman serve``: no request may get a 5xx, and none may start a command that is not
in the config. Valid and invalid inputs both (positive and negative generation)."""

from __future__ import annotations

import random
import shlex
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from schemathesis.generation.case import Case

from tests.hardening.conftest import TOKEN, Record, Scale, Serve, child, tagged

PROCESSES = [
    child(
        "ticker",
        "import itertools, time\nfor i in itertools.count():\n    print(i, flush=True)\n    time.sleep(0.05)",
    ),
    child("web", "import time\ntime.sleep(3600)", env={"API_KEY": "sk-schemathesis-0001"}),
    {"id": "stopped-one", "command": "sleep", "args": ["3600"]},
]
STREAMS = ("/events", "/{id}/logs")


@pytest.fixture
def serve(serve_factory: Callable[..., Serve]) -> Iterator[Serve]:
    served = serve_factory(PROCESSES)
    yield served
    allowed = {shlex.join([p["command"], *p.get("args", [])]) for p in PROCESSES}
    for process in tagged(f"{served.run_id()}:"):
        cmdline = shlex.join(process.cmdline())
        assert cmdline in allowed or "sleep 3600" in cmdline, f"a command not in the config ran: {cmdline}"


def exercise(case: Case[Any], base_url: str, session: requests.Session) -> int:
    """One request; streams are read up to their headers only (they never end)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    query = case.query or {}
    streaming = case.path == "/events" or str(query.get("follow", "")).lower() in ("1", "true")
    request = case.as_transport_kwargs(base_url=base_url, headers=headers)
    with session.request(**request, timeout=15, stream=streaming) as response:
        status = response.status_code
        text = "" if streaming else response.text[:300]
    assert status < 500, f"{case.method} {case.formatted_path} {query}: HTTP {status} {text}"
    return status


def test_the_api_fuzzed_from_its_openapi_never_answers_5xx(
    serve: Serve, scale: Scale, figures: Record
) -> None:
    examples = scale.pick(15, 500)
    base_url = f"{serve.url}/api/pm"
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=15)
    session = requests.Session()
    statuses: dict[int, int] = {}
    calls = 0
    ids = st.sampled_from(["ticker", "web", "stopped-one", "..", "%2e%2e", "web/../ticker", "a" * 300, "ünï"])
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the OpenAPI document is invalid: {result.err()}"
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=not scale.soak,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy, real_id=ids, use_real=st.booleans())
            def run(case: Case[Any], real_id: str, use_real: bool) -> None:
                nonlocal calls
                if use_real and case.path_parameters and "id" in case.path_parameters:
                    case.path_parameters["id"] = real_id
                status = exercise(case, base_url, session)
                statuses[status] = statuses.get(status, 0) + 1
                calls += 1

            try:
                run()
            except Unsatisfiable:
                # An operation that takes no input (GET /list) cannot be given an invalid one.
                assert mode is GenerationMode.NEGATIVE, operation.label
    assert serve.states()["ticker"]["status"] in ("running", "stopped", "starting", "stopping")
    assert serve.popen is not None and serve.popen.poll() is None, "the server died"
    shown = ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items()))
    figures("Schemathesis from /api/pm/openapi.json", f"{calls} requests, no 5xx ({shown})")


def test_random_order_of_actions_keeps_one_child_per_process(serve: Serve) -> None:
    """Start, stop and restart in a random order, from many threads at once: each process ends up with
    at most one child, and in the state last asked of it."""
    from concurrent.futures import ThreadPoolExecutor

    rng = random.Random(7)
    actions = [
        (rng.choice(["start", "stop", "restart"]), rng.choice(["web", "stopped-one"])) for _ in range(30)
    ]

    def act(action: tuple[str, str]) -> int:
        with serve.client() as client:
            return client.post(f"/api/pm/{action[1]}/{action[0]}").status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(act, actions))
    assert set(codes) <= {200, 400}, codes
    run = serve.run_id()
    for process_id in ("web", "stopped-one"):
        assert len(tagged(f"{run}:{process_id}")) <= 1
    with serve.client() as client:
        for process_id in ("web", "stopped-one"):
            client.post(f"/api/pm/{process_id}/stop")
            assert serve.states()[process_id]["status"] == "stopped"
            assert tagged(f"{run}:{process_id}") == []
