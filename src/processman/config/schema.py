"""The JSON Schema of ``pb_processes.json``, made from the field tables the loader reads with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from processman.config.model import PROCESS_FIELDS
from processman.config.notify import NotifyTargets


def json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of ``pb_processes.json`` for editors."""
    properties: dict[str, Any] = {}
    for spec in PROCESS_FIELDS:
        schema = spec.kind.schema()
        if spec.description:
            schema["description"] = spec.description
        if spec.default is not None and not isinstance(spec.default, Mapping | tuple):
            schema["default"] = spec.kind.show(spec.default, mask=False)
        properties[spec.key] = schema
    process = {
        "type": "object",
        "required": [spec.key for spec in PROCESS_FIELDS if spec.required],
        "oneOf": [{"required": ["script"]}, {"required": ["command"]}],
        "additionalProperties": False,
        "properties": properties,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "processman configuration (pb_processes.json)",
        "oneOf": [
            {"type": "array", "items": process},
            {
                "type": "object",
                "required": ["processes"],
                "properties": {
                    "processes": {"type": "array", "items": process},
                    "notify": {
                        **NotifyTargets().schema(),
                        "description": "where the events of every process are sent",
                    },
                },
            },
        ],
    }
