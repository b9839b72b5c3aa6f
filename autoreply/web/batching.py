"""Micro-batching: concurrent customer messages share one encoder call.

``MicroBatcher.submit(message)`` queues the message and awaits its reply. A dispatcher task
takes what is queued (up to ``max_batch``) and hands it to ``process`` (``AutoReply.
handle_many``) on a worker thread; the event loop stays free to accept requests meanwhile.

By default one batch runs at a time, on one thread. With ``max_concurrent=2`` two batches
may overlap (one in the encoder, one doing its per-message Python work); on 2 cores with
the bundled encoder that measured no faster, within the runs' noise (bench/service.py at
concurrency 32). Either way order holds where it matters: a message whose conversation or
message id belongs to a batch still running waits for it, so a conversation's messages are
handled one after the other and a repeated message id is answered from the first.
``in_own_thread`` runs other long work (startup, reload, gap topics) on a short-lived
thread, off the event loop. The bundled encoder runs every call on its own single thread
whichever thread asks (see ``autoreply.encoder``: its OpenMP runtime slows down for good
once two long-lived threads have called it).

Small math on one thread: a batch's ranking is a few small matrix products and a faiss
search, too small to share, and the BLAS and OpenMP workers that would share them spin after
each one, on the cores the encoder needs. Measured on 2 cores, handling a message cost 2.8 ms
of CPU besides the model with them and 0.73 ms without. The app runs BLAS on one thread while
it serves (``blas_on_one_thread``: BLAS settings are process-wide) and the worker thread its
OpenMP regions (``single_threaded_math``: OpenMP settings are per thread). The model encoders
run on threads of their own (``autoreply.encoder``), so neither limit reaches them.

How long to wait for company: when nothing else arrives within one turn of the event loop,
the batch goes at once (a lone request pays no window); while messages keep arriving, the
batch waits up to ``window_ms`` for more. While another batch is running, the next one
grows until it is as large as that one (or that one finishes): under load two batches of
about half the concurrency alternate, one in the encoder and one finishing up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from threading import Thread
from typing import Any, TypeVar

from autoreply.errors import AutoreplyError, StoreError
from autoreply.models import Message, Reply
from autoreply.web import memory

log = logging.getLogger("autoreply.api")

T = TypeVar("T")

Process = Callable[[Sequence[Message]], Sequence[Reply | AutoreplyError]]
"""Handle a batch; one result per message, an AutoreplyError in place of a failed one."""


def single_threaded_math() -> None:
    """Run the calling thread's OpenMP regions (faiss searches) on one thread."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="openmp")


def blas_on_one_thread() -> Any:
    """BLAS on one thread for the whole process: a context manager (the limits before it
    come back on exit), or call ``.restore_original_limits()``.
    Fitting the knowledge base's classifier is faster this way too on 2 cores (1.9 s against
    3.5 s for clinc150's 3,150 texts)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


async def in_own_thread(work: Callable[[], T], *, name: str = "autoreply-work") -> T:
    """Run ``work`` (loading, reloading, clustering) on a new thread that ends with it, off
    the event loop and off the batch thread. Afterwards the memory its temporaries left free
    goes back to the system (``malloc_trim``): clustering's grow with the gap window, and
    glibc would otherwise keep each run's high-water mark (bench/README.md, soak)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = work()
        except BaseException as exc:
            error = exc
        memory.release_free_memory()
        loop.call_soon_threadsafe(settle, result, error)

    Thread(target=run, name=name, daemon=True).start()
    return await future


def ordering_keys(message: Message) -> frozenset[tuple[str, ...]]:
    """What a message must not share with a batch still running: its conversation and
    (channel, message id)."""
    keys: set[tuple[str, ...]] = {("conversation", message.conversation)}
    if message.message_id:
        keys.add(("message", message.channel, message.message_id))
    return frozenset(keys)


@dataclass
class _Item:
    message: Message
    future: asyncio.Future[Reply]
    keys: frozenset[tuple[str, ...]] = field(init=False)

    def __post_init__(self) -> None:
        self.keys = ordering_keys(self.message)


class MicroBatcher:
    """Collects concurrent messages into batches for one ``process`` call each."""

    def __init__(
        self,
        process: Process,
        *,
        window_ms: float = 2.0,
        max_batch: int = 64,
        max_concurrent: int = 1,
        on_batch: Callable[[int, float], None] | None = None,
        thread_setup: Callable[[], None] | None = None,
    ) -> None:
        self.process = process
        self.window = window_ms / 1000
        self.max_batch = max(1, max_batch)
        self.max_concurrent = max(1, max_concurrent)
        self.on_batch = on_batch
        """Called with (batch size, seconds) after each batch (metrics)."""
        self.thread_setup = thread_setup
        """Runs first on each worker thread (e.g. ``single_threaded_math``)."""
        self._pending: deque[_Item] = deque()
        self._busy: set[tuple[str, ...]] = set()
        """Ordering keys of the batches running now."""
        self._running: dict[asyncio.Task[None], int] = {}
        """Batches running now, with their sizes."""
        self._wake = asyncio.Event()
        """Set when a message arrives or a batch finishes."""
        self._executor: ThreadPoolExecutor | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        """Start the dispatcher (inside the running event loop)."""
        self._executor = ThreadPoolExecutor(
            max_workers=self.max_concurrent,
            thread_name_prefix="autoreply-batch",
            initializer=self.thread_setup,
        )
        loop = asyncio.get_running_loop()
        self._dispatcher = loop.create_task(self._dispatch(), name="micro-batcher")

    async def submit(self, message: Message) -> Reply:
        """The reply to ``message``, handled in the next batch it can join."""
        if self._closed or self._dispatcher is None:
            raise StoreError("the service is shutting down; send the message again shortly")
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending.append(_Item(message, future))
        self._wake.set()
        return await future

    async def close(self) -> None:
        """Answer what is queued, then stop the dispatcher and the worker threads."""
        self._closed = True
        self._wake.set()
        if self._dispatcher is not None:
            await self._dispatcher
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    # -- dispatcher -----------------------------------------------------------------------
    async def _dispatch(self) -> None:
        while True:
            while len(self._running) >= self.max_concurrent:
                await self._wait()
            batch = await self._next_batch()
            if not batch:
                break
            keys = frozenset().union(*(item.keys for item in batch))
            self._busy |= keys
            task = asyncio.get_running_loop().create_task(self._run(batch, keys))
            self._running[task] = len(batch)
        if self._running:
            await asyncio.wait(list(self._running))

    async def _run(self, batch: list[_Item], keys: frozenset[tuple[str, ...]]) -> None:
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        results: Sequence[Reply | BaseException]
        try:
            messages = [item.message for item in batch]
            results = await loop.run_in_executor(self._executor, self.process, messages)
        except Exception as exc:  # a bug, not a domain error: every waiter gets it
            log.exception("micro-batch failed", extra={"size": len(batch)})
            results = [exc] * len(batch)
        finally:
            self._busy -= keys
            if (task := asyncio.current_task()) is not None:
                self._running.pop(task, None)
            self._wake.set()
        if self.on_batch is not None:
            self.on_batch(len(batch), time.perf_counter() - start)
        for item, result in zip(batch, results, strict=True):
            if item.future.done():  # the client went away; the message is still stored
                continue
            if isinstance(result, BaseException):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)

    async def _wait(self, timeout: float | None = None) -> bool:
        """Wait for an arrival or a finished batch; False on timeout."""
        self._wake.clear()
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            return False
        return True

    def _take(self, batch: list[_Item]) -> None:
        """Move queued items into ``batch``, in order, skipping those whose keys are busy
        (a running batch, or an earlier skipped item of the same conversation)."""
        blocked = set(self._busy)
        keep: deque[_Item] = deque()
        while self._pending:
            item = self._pending.popleft()
            if item.future.done():
                continue
            if len(batch) < self.max_batch and not item.keys & blocked:
                batch.append(item)
            else:
                keep.append(item)
                blocked |= item.keys
        self._pending = keep

    async def _next_batch(self) -> list[_Item]:
        """The next batch (empty when closed and nothing is left to answer)."""
        batch: list[_Item] = []
        self._take(batch)
        while not batch:
            if self._closed and not self._pending:
                return batch
            await self._wait()
            self._take(batch)
        await self._gather(batch)
        return await self._fill_while_busy(batch)

    async def _gather(self, batch: list[_Item]) -> None:
        """Wait up to the window for more, but only while messages keep arriving."""
        if len(batch) >= self.max_batch or self.window <= 0:
            return
        await asyncio.sleep(0)  # let requests that are already in flight enqueue
        before = len(batch)
        self._take(batch)
        if len(batch) == before:
            return  # quiet: a lone request does not wait
        deadline = asyncio.get_running_loop().time() + self.window
        while len(batch) < self.max_batch:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or not await self._wait(remaining):
                break
            self._take(batch)

    async def _fill_while_busy(self, batch: list[_Item]) -> list[_Item]:
        """While another batch runs there is no hurry (the encoder is busy): grow this one
        to the running one's size, or until that finishes. Two batches in flight then
        share the load evenly instead of a big one and a straggler."""
        while self._running and not self._closed:
            wanted = min(self.max_batch, max(self._running.values()))
            if len(batch) >= wanted:
                break
            await self._wait()
            self._take(batch)
        return batch
