"""uvicorn, imported without watchfiles.

``import uvicorn`` loads its command line, whose ``--reload`` supervisor imports watchfiles (a Rust
extension: 1.6 MB of an idle ``serve``, which never reloads). With watchfiles hidden while uvicorn
loads, uvicorn picks its own stat-based reloader instead; watchfiles stays importable afterwards
(``devMode`` watches with it).
"""

from __future__ import annotations

import sys


def import_uvicorn() -> None:
    if "uvicorn" in sys.modules:
        return
    hidden = "watchfiles" not in sys.modules
    if hidden:
        sys.modules["watchfiles"] = None  # type: ignore[assignment]  # an import of it raises ImportError
    try:
        import uvicorn  # noqa: F401
    finally:
        if hidden and sys.modules.get("watchfiles", False) is None:
            del sys.modules["watchfiles"]


import_uvicorn()
