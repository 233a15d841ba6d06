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
