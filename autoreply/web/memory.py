"""Keep the service's memory flat: fewer glibc malloc arenas. Does nothing off glibc.

Why (bench/README.md, soak; bench/memprobe.py reproduces it in one process): the heavy
requests (gap clustering, the weekly report, reloads) run on short-lived threads and allocate
temporaries that grow with the gap window (faiss's BLAS blocks, numpy matrices). glibc gives
threads up to 8 arenas per core and keeps what is freed in each arena (the dynamic mmap
threshold and the top of non-main heaps, which ``malloc_trim`` does not trim), so every
arena a clustering thread lands on ends up holding one clustering's worth: RSS climbed
+113 MB over 1,800 messages and 45 clusterings at concurrency 8 while memory in use grew
3 MB. With two arenas the same run grew 6 MB. Python threads hold the GIL, so two arenas
cost no measurable contention (bench/service.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger("autoreply.api")

ARENAS = 2
"""glibc malloc arenas for the service process (glibc's default: 8 per core)."""

_M_ARENA_MAX = -8  # mallopt parameter, from glibc's malloc.h


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    # musl has neither gnu_get_libc_version nor mallopt's arena parameter
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    return libc


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas for threads created from now on; True if it did (False off
    glibc, or when the user set ``MALLOC_ARENA_MAX`` themselves: theirs wins). Call it before
    the service starts its threads."""
    libc = _glibc()
    if libc is None or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    done = bool(libc.mallopt(_M_ARENA_MAX, int(arenas)))
    if done:
        log.info("malloc arenas limited", extra={"arenas": arenas})
    return done


def release_free_memory() -> bool:
    """Give freed heap pages back to the system (``malloc_trim(0)``); True if any were
    (False off glibc)."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
