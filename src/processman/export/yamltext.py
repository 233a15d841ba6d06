"""A small YAML writer for the files ``export`` generates: mappings, lists, strings, numbers and
booleans, block style. Strings that could read as anything else (a number, ``yes``, ``null``, a
``${VAR}``) are double-quoted with JSON's escapes, which YAML reads the same way, so every value
keeps its type without a YAML library at run time."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

# Plain (unquoted) only what no YAML 1.1 or 1.2 reader takes for a number, a boolean or null.
_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./@-]*")
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        if _PLAIN.fullmatch(value) and value.lower() not in _RESERVED:
            return value
        return json.dumps(value)
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _lines(value: Any, indent: str) -> list[str]:
    lines: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            head = f"{indent}{scalar(str(key))}:"
            if _is_block(item):
                lines.append(head)
                # A list under a key may sit at the key's indent; nested mappings indent by two.
                lines.extend(_lines(item, indent + "  "))
            else:
                lines.append(f"{head} {_inline(item)}")
    else:
        for item in value:
            if _is_block(item):
                nested = _lines(item, indent + "  ")
                lines.append(f"{indent}- {nested[0].lstrip()}")
                lines.extend(nested[1:])
            else:
                lines.append(f"{indent}- {_inline(item)}")
    return lines


def _is_block(value: Any) -> bool:
    return isinstance(value, Mapping | list | tuple) and len(value) > 0


def _inline(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, list | tuple):
        return "[]"
    return scalar(value)


def dump(document: Mapping[str, Any]) -> str:
    """One YAML document."""
    return "\n".join(_lines(document, "")) + "\n"


def dump_all(documents: Sequence[Mapping[str, Any]]) -> str:
    """Several documents, separated by ``---``."""
    return "---\n" + "---\n".join(dump(document) for document in documents)
