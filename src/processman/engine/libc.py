"""The C library, for the few calls Python's standard library lacks (prctl, inotify).

Found through ``dlopen(NULL)``: the symbols the interpreter has already loaded. ``ctypes.util.find_library``
runs ``ldconfig -p`` in a child process, milliseconds of every start of ``serve``.
"""

from __future__ import annotations

import ctypes
import functools


@functools.cache
def libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)
