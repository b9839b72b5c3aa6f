"""``python -m autoreply.gap_worker``: run gap_clustering.discover() in a process of its own.

gap_topics starts it for a large window (``TopicConfig.isolate_from``) so that the clustering's
peak memory leaves with the process instead of staying in the service's heap. It reads one
pickled ``(vectors, FaqTexts, TopicConfig, rejected)`` from stdin and writes the pickled list
of ``Found`` to stdout. A plain child process rather than multiprocessing: spawning re-imports
the parent's ``__main__``, which would re-run a user's unguarded script.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np

from autoreply.gap_clustering import FaqTexts, Found, TopicConfig, discover


def discover_in_child(
    vectors: np.ndarray, faq: FaqTexts, config: TopicConfig, rejected: np.ndarray | None
) -> list[Found]:
    """discover() in a fresh ``python -m autoreply.gap_worker``; its errors come back as a
    RuntimeError carrying the child's last lines of stderr."""
    payload = pickle.dumps((vectors, faq, config, rejected), protocol=pickle.HIGHEST_PROTOCOL)
    # The caller's import path, so the child finds the same autoreply however it was found
    # (an installed package, a checkout on sys.path, PYTHONPATH).
    path = os.pathsep.join(p for p in sys.path if p)
    done = subprocess.run(
        [sys.executable, "-m", "autoreply.gap_worker"],
        input=payload,
        capture_output=True,
        check=False,
        env={**os.environ, "PYTHONPATH": path},
    )
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise RuntimeError(f"gap clustering child failed ({done.returncode}): {' | '.join(tail)}")
    found = pickle.loads(done.stdout)  # our own child's output, never outside input
    if not isinstance(found, list) or not all(isinstance(f, Found) for f in found):
        raise RuntimeError("gap clustering child returned something other than topics")
    return found


def main() -> None:
    vectors, faq, config, rejected = pickle.loads(sys.stdin.buffer.read())
    sys.stdout.buffer.write(pickle.dumps(discover(vectors, faq, config, rejected)))


if __name__ == "__main__":
    main()
