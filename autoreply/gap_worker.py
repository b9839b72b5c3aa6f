"""``python -m autoreply.gap_worker``: run gap_clustering.discover() in a process of its own.

gap_topics starts it for a large window (``TopicConfig.isolate_from``) so that the clustering's
peak memory leaves with the process instead of staying in the service's heap. It reads one
pickled ``(vectors, FaqTexts, TopicConfig, rejected)`` from stdin and writes the pickled list
of ``Found`` to stdout. A plain child process rather than multiprocessing: spawning re-imports
the parent's ``__main__``, which would re-run a user's unguarded script. Only vectors and
settings cross over, never customer text.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np

from autoreply.gap_clustering import FaqTexts, Found, TopicConfig, discover

TIMEOUT_SECONDS = 900
"""A child that takes longer than this is stopped (a 4,000-gap window takes seconds)."""


class ChildFailed(RuntimeError):
    """The child could not cluster: it could not start, failed, timed out or returned
    something unreadable. The caller may cluster in its own process instead."""


class ChildKilled(ChildFailed):
    """The child was killed by a signal or ran out of memory: clustering the same window in
    the caller's process would meet the same fate, so it should not."""


def discover_in_child(
    vectors: np.ndarray, faq: FaqTexts, config: TopicConfig, rejected: np.ndarray | None
) -> list[Found]:
    """discover() in a fresh ``python -P -m autoreply.gap_worker`` (``-P``: the current folder
    never shadows the installed package); its failures are ChildFailed with the child's last
    lines of stderr."""
    payload = pickle.dumps((vectors, faq, config, rejected), protocol=pickle.HIGHEST_PROTOCOL)
    # The caller's import path, so the child finds the same autoreply however it was found
    # (an installed package, a checkout on sys.path, PYTHONPATH).
    path = os.pathsep.join(p for p in sys.path if p)
    try:
        done = subprocess.run(
            [sys.executable, "-P", "-m", "autoreply.gap_worker"],
            input=payload,
            capture_output=True,
            check=False,
            timeout=TIMEOUT_SECONDS,
            env={**os.environ, "PYTHONPATH": path},
        )
    except subprocess.TimeoutExpired as exc:
        raise ChildFailed(f"gap clustering child timed out after {TIMEOUT_SECONDS} s") from exc
    except OSError as exc:
        raise ChildFailed(f"gap clustering child could not start: {exc}") from exc
    tail = " | ".join(done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:])
    if done.returncode < 0 or "MemoryError" in tail:
        raise ChildKilled(f"gap clustering child killed ({done.returncode}): {tail}")
    if done.returncode != 0:
        raise ChildFailed(f"gap clustering child failed ({done.returncode}): {tail}")
    try:
        found = pickle.loads(done.stdout)  # our own child's output, never outside input
    except Exception as exc:  # a truncated or foreign stream: unpickling raises many kinds
        raise ChildFailed(f"gap clustering child's output is unreadable: {exc!r}") from exc
    if not isinstance(found, list) or not all(isinstance(f, Found) for f in found):
        raise ChildFailed("gap clustering child returned something other than topics")
    return found


def main() -> None:
    vectors, faq, config, rejected = pickle.loads(sys.stdin.buffer.read())
    sys.stdout.buffer.write(pickle.dumps(discover(vectors, faq, config, rejected)))


if __name__ == "__main__":
    main()
