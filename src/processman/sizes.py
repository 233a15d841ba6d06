"""Memory sizes: ``512MB``, ``1.5GB``, ``300K``. Units are binary (1 MB = 1024 KB), as in PM2."""

from __future__ import annotations

import re

# The JSON Schema of the config gives the same rule: ASCII digits, units in any case, spaces around.
SIZE_PATTERN = r"^\s*[0-9]+(\.[0-9]+)?\s*([bB]|[kKmMgG]([bB]|[iI][bB])?)?\s*$"
_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*(B|K|KB|KIB|M|MB|MIB|G|GB|GIB)?$", re.IGNORECASE)
_FACTORS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def parse_size(text: str) -> int:
    """Bytes in ``text``; raise ValueError when it is not a size.

    >>> parse_size("512MB")
    536870912
    """
    match = _SIZE.match(text.strip())
    if match is None:
        raise ValueError(f"not a size: {text!r}")
    unit = (match.group(2) or "").upper()[:1]
    size = float(match.group(1)) * _FACTORS[unit]
    if size == float("inf"):  # int() of it would raise OverflowError
        raise ValueError(f"not a size: {text!r}")
    return int(size)


def format_size(size: int) -> str:
    """``536870912`` -> ``512MB``; keeps one decimal where needed."""
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= factor:
            value = size / factor
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    return f"{size}B"
