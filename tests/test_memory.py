"""autoreply.web.memory: fewer glibc malloc arenas for the service; a no-op elsewhere."""

from __future__ import annotations

import subprocess
import sys

import pytest

from autoreply.web import memory

ARENAS_USED = """
import ctypes, threading
from autoreply.web.memory import limit_malloc_arenas
if {limit}:
    assert limit_malloc_arenas(2)
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
held = []
barrier = threading.Barrier(8)
def work():
    barrier.wait()  # all eight alive at once, each asking malloc for memory
    held.append(libc.malloc(100_000))
threads = [threading.Thread(target=work) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
import tempfile, pathlib
with tempfile.NamedTemporaryFile() as out:
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    fp = libc.fopen(out.name.encode(), b"w")
    libc.malloc_info(0, fp)
    libc.fclose(fp)
    print(pathlib.Path(out.name).read_text().count("<heap nr="))
"""


def arenas_used(*, limit: bool) -> int:
    code = ARENAS_USED.format(limit=limit)
    env = {"PATH": "/usr/bin:/bin"}  # no MALLOC_ARENA_MAX from the caller
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


@pytest.mark.skipif(memory._glibc() is None, reason="glibc only")
def test_threads_share_two_arenas_once_limited() -> None:
    """Eight threads allocating at once spread over more than two arenas by default, and
    over at most two after limit_malloc_arenas(2)."""
    assert arenas_used(limit=False) > 2
    assert arenas_used(limit=True) <= 2


def test_helpers_do_nothing_off_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off glibc (macOS, musl, Windows) both helpers return False and change nothing."""
    monkeypatch.setattr(memory, "_glibc", lambda: None)
    assert memory.limit_malloc_arenas() is False
    assert memory.release_free_memory() is False


def test_a_users_own_arena_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """MALLOC_ARENA_MAX set by the user: the service leaves malloc as they configured it."""
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert memory.limit_malloc_arenas() is False


def test_long_work_gives_its_free_memory_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """in_own_thread (clustering, reports, reloads) trims the heap when the work ends, failed
    or not: with two arenas glibc hands back what the run's temporaries left free."""
    import asyncio

    from autoreply.web import batching

    trims: list[int] = []
    monkeypatch.setattr(memory, "release_free_memory", lambda: trims.append(1) or True)

    async def both() -> None:
        assert await batching.in_own_thread(lambda: 42) == 42

        def fail() -> None:
            raise ValueError("boom")

        with pytest.raises(ValueError):
            await batching.in_own_thread(fail)

    asyncio.run(both())
    assert len(trims) == 2
