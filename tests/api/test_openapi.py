"""The OpenAPI description matches the routes the API really has."""

from __future__ import annotations

import json
import re

from starlette.routing import Route

from processman import ProcessManager
from processman.api import AdminToken, ControlAPI
from processman.api.openapi import openapi_document
from tests.api.conftest import Served


def test_every_route_is_described_with_its_methods() -> None:
    api = ControlAPI(ProcessManager(), AdminToken("x" * 32))
    routes = {route.path: route.methods for route in api.routes if isinstance(route, Route)}
    document = openapi_document()
    assert set(document["paths"]) == set(routes)
    for path, methods in routes.items():
        described = {method.upper() for method in document["paths"][path]}
        assert described == (methods or set()) - {"HEAD"}, path


def test_every_operation_documents_its_responses_and_references_resolve() -> None:
    document = openapi_document()
    for path, operations in document["paths"].items():
        for operation in operations.values():
            assert "200" in operation["responses"], path
            assert operation["summary"], path
    references = set(re.findall(r'"#/components/schemas/([A-Za-z]+)"', json.dumps(document)))
    assert references == set(document["components"]["schemas"])


async def test_served_document_names_its_mount_point(served: Served) -> None:
    response = await served.client.get("/api/pm/openapi.json", headers={"Authorization": ""})
    assert response.status_code == 200
    document = response.json()
    assert document["servers"] == [{"url": "/api/pm"}]
    assert "/{id}/logs" in document["paths"]


def test_the_documented_shapes_match_what_the_serialisers_send() -> None:
    """Every field the API sends is described, with the values it takes (the ``system`` stream, the
    exit's shape, the log health fields), and the document validates real output."""
    import jsonschema

    from processman.api.wire import exit_to_json, line_to_json, state_to_json
    from processman.engine.process import ExitRecord
    from processman.logs import LogLine
    from tests.api.test_wire import state_of

    schemas = openapi_document()["components"]["schemas"]
    assert schemas["LogLine"]["properties"]["stream"]["enum"] == ["stdout", "stderr", "system"]
    exit = exit_to_json(ExitRecord(1_700_000_000.0, None, 9, 14.5, "killed", ("last",)))
    state = state_to_json(state_of(exits=(ExitRecord(1_700_000_000.0, 1, None, 0.5, "crashed"),)))
    line = line_to_json(LogLine(1, 1_700_000_000.0, "x", "system", "restarting: restart requested"))
    for name, sent in (("ExitRecord", exit), ("ProcessState", state), ("LogLine", line)):
        assert set(sent) == set(schemas[name]["properties"]), name
        resolver = {"components": {"schemas": schemas}, **schemas[name]}
        jsonschema.validate(sent, resolver)
