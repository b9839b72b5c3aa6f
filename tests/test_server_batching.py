"""Micro-batching: the MicroBatcher on its own, AutoReply.handle_many, and concurrent API
requests sharing one encoder call (also with the real encoder, marked slow)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from test_server import concurrently, roomy

from autoreply.app import create_app
from autoreply.encoder import Encoder, HashingEncoder, Kind
from autoreply.errors import AutoreplyError, StoreError
from autoreply.knowledge import bundled_knowledge_dir
from autoreply.models import Action, Message, Reason, Reply
from autoreply.service import AutoReply
from autoreply.settings import Settings
from autoreply.web.batching import MicroBatcher, blas_on_one_thread, single_threaded_math


def fake_reply(message: Message) -> Reply:
    return Reply(
        decision=Action.ANSWER,
        reason=Reason.CONFIDENT,
        text=message.text.upper(),
        conversation_id=message.conversation,
    )


class Recorder:
    """A ``process`` that records each batch; texts starting with "bad" fail."""

    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[list[str]] = []
        self.delay = delay

    def __call__(self, messages: Sequence[Message]) -> list[Reply | AutoreplyError]:
        self.batches.append([m.text for m in messages])
        time.sleep(self.delay)
        return [
            StoreError(f"cannot store {m.text}") if m.text.startswith("bad") else fake_reply(m)
            for m in messages
        ]


async def run(batcher: MicroBatcher, texts: Sequence[str]) -> list[Reply | BaseException]:
    batcher.start()
    try:
        return await asyncio.gather(
            *(batcher.submit(Message(text=t, user_id=t)) for t in texts), return_exceptions=True
        )
    finally:
        await batcher.close()


def test_concurrent_messages_share_one_call() -> None:
    """Messages submitted together are processed in one batch, each gets its own reply."""
    process = Recorder()
    results = asyncio.run(run(MicroBatcher(process, window_ms=50), ["a", "b", "c", "d"]))
    assert process.batches == [["a", "b", "c", "d"]]
    assert [r.text for r in results if isinstance(r, Reply)] == ["A", "B", "C", "D"]


def test_batches_run_on_a_thread_set_up_by_thread_setup() -> None:
    """``thread_setup`` runs once on the worker thread, before the batches it processes."""
    setups: list[int] = []
    workers: list[int] = []

    def process(messages: Sequence[Message]) -> list[Reply | AutoreplyError]:
        workers.append(threading.get_ident())
        return [fake_reply(m) for m in messages]

    batcher = MicroBatcher(process, thread_setup=lambda: setups.append(threading.get_ident()))
    results = asyncio.run(run(batcher, ["a", "b", "c"]))
    assert all(isinstance(r, Reply) for r in results)
    assert len(setups) == 1 and set(workers) == set(setups)
    assert setups[0] != threading.get_ident()


def test_single_threaded_math_limits_only_this_threads_openmp() -> None:
    """OpenMP settings are per thread: the batch thread's faiss runs on one, others keep theirs."""
    import faiss

    seen: dict[str, int] = {}

    def worker() -> None:
        single_threaded_math()
        seen["worker"] = faiss.omp_get_max_threads()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen["worker"] == 1
    others: list[int] = []
    other = threading.Thread(target=lambda: others.append(faiss.omp_get_max_threads()))
    other.start()
    other.join()
    assert others == [faiss.omp_get_max_threads()]


def test_blas_on_one_thread_until_restored() -> None:
    from threadpoolctl import threadpool_info

    def blas() -> dict[str, int]:
        return {
            lib["filepath"]: lib["num_threads"]
            for lib in threadpool_info()
            if lib["user_api"] == "blas"
        }

    before = blas()
    assert before, "numpy's BLAS is loaded"
    limit = blas_on_one_thread()
    try:
        assert set(blas().values()) == {1}
    finally:
        limit.restore_original_limits()
    assert blas() == before


def test_max_batch_splits_and_later_arrivals_form_the_next_batch() -> None:
    """No batch is larger than max_batch; what queues meanwhile is the next batch."""
    process = Recorder(delay=0.02)
    texts = [f"m{i}" for i in range(10)]
    batcher = MicroBatcher(process, window_ms=5, max_batch=4, max_concurrent=1)
    results = asyncio.run(run(batcher, texts))
    assert [len(b) for b in process.batches] == [4, 4, 2]
    assert [t for b in process.batches for t in b] == texts
    assert all(isinstance(r, Reply) for r in results)


def test_two_batches_overlap_but_a_conversation_never_does() -> None:
    """While one batch runs, the next may start, except for messages of a conversation (or
    a message id) still in the running batch: those wait for it."""
    running: list[set[str]] = []
    overlapped = threading.Event()
    lock = threading.Lock()

    def process(messages: Sequence[Message]) -> list[Reply | AutoreplyError]:
        users = {m.user_id for m in messages}
        with lock:
            assert not any(users & other for other in running), "a conversation overlapped"
            running.append(users)
            if len(running) > 1:
                overlapped.set()
        overlapped.wait(0.2)
        time.sleep(0.02)
        with lock:
            running.remove(users)
        return [fake_reply(m) for m in messages]

    async def scenario() -> list[Reply]:
        batcher = MicroBatcher(process, window_ms=0, max_batch=2, max_concurrent=2)
        batcher.start()
        users = ["a", "b", "a", "c", "a", "d"]
        replies = await asyncio.gather(
            *(batcher.submit(Message(text=f"{u}{i}", user_id=u)) for i, u in enumerate(users))
        )
        await batcher.close()
        return replies

    replies = asyncio.run(scenario())
    assert [r.text for r in replies] == ["A0", "B1", "A2", "C3", "A4", "D5"]
    assert overlapped.is_set()


def test_a_lone_message_does_not_wait_for_the_window() -> None:
    """With nothing else arriving, a message goes at once even with a long window."""
    process = Recorder()

    async def lone() -> float:
        batcher = MicroBatcher(process, window_ms=2000)
        batcher.start()
        start = time.perf_counter()
        await batcher.submit(Message(text="alone"))
        elapsed = time.perf_counter() - start
        await batcher.close()
        return elapsed

    assert asyncio.run(lone()) < 0.5


def test_errors_reach_only_their_own_message() -> None:
    """A per-message error is raised for that message; a crashing batch fails them all."""
    results = asyncio.run(run(MicroBatcher(Recorder(), window_ms=20), ["ok", "bad", "fine"]))
    assert isinstance(results[1], StoreError) and "cannot store bad" in str(results[1])
    assert isinstance(results[0], Reply) and isinstance(results[2], Reply)

    def crash(messages: Sequence[Message]) -> list[Reply | AutoreplyError]:
        raise RuntimeError("bug")

    results = asyncio.run(run(MicroBatcher(crash), ["x", "y"]))
    assert all(isinstance(r, RuntimeError) for r in results)


def test_close_answers_what_is_queued_and_then_refuses() -> None:
    """Closing finishes queued messages; submitting afterwards is a clear StoreError."""
    process = Recorder(delay=0.01)

    async def scenario() -> tuple[list[Reply | BaseException], BaseException | None]:
        batcher = MicroBatcher(process, window_ms=0, max_batch=1)
        batcher.start()
        tasks = [asyncio.create_task(batcher.submit(Message(text=f"q{i}"))) for i in range(3)]
        await asyncio.sleep(0)
        await batcher.close()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await batcher.submit(Message(text="late"))
        except StoreError as exc:
            return done, exc
        return done, None

    done, late = asyncio.run(scenario())
    assert all(isinstance(r, Reply) for r in done)
    assert late is not None and "shutting down" in str(late)


# -- AutoReply.handle_many ----------------------------------------------------------------


def test_handle_many_matches_handle_one_by_one(settings: Settings, tmp_path: Path) -> None:
    """The same messages through handle_many and through handle give the same replies."""
    texts = ["如何退款", "password reset", "I want to talk to a human", "怎么修改密码？", ""]
    batch = [Message(text=t, user_id=f"u{i}") for i, t in enumerate(texts)]
    with AutoReply.from_settings(settings, encoder=HashingEncoder()) as bot:
        together = bot.handle_many(batch)
    single = settings.with_overrides(db=str(tmp_path / "single.db"))
    with AutoReply.from_settings(single, encoder=HashingEncoder()) as bot:
        alone = [bot.handle(m) for m in batch]
    keep = {"decision", "reason", "text", "entry_id", "confidence", "ticket_id", "priority"}
    assert [r.model_dump(include=keep) for r in together] == [
        r.model_dump(include=keep) for r in alone
    ]


def test_handle_many_orders_messages_of_one_conversation(settings: Settings) -> None:
    """Two messages of one conversation in one call: the second sees the first (its ticket);
    a repeated message id in the same call is a duplicate."""
    with AutoReply.from_settings(settings, encoder=HashingEncoder()) as bot:
        human = Message(text="I want to talk to a human", user_id="u1", message_id="1")
        follow = Message(text="如何退款", user_id="u1", message_id="2")
        first, second, again = bot.handle_many([human, follow, human])
        assert first.decision is Action.ESCALATE and first.ticket_id
        assert second.reason is Reason.AGENT_HANDLING and second.ticket_id == first.ticket_id
        assert again.duplicate and again.message_id == first.message_id
        assert len(bot.store.history("api:u1")) == 4


def test_handle_many_can_return_errors_in_place(settings: Settings) -> None:
    """With return_exceptions, one message's store error does not sink the others."""
    with AutoReply.from_settings(settings, encoder=HashingEncoder()) as bot:
        store = bot.store
        original = store.add_message

        def flaky(**fields: object) -> object:
            if fields.get("text") == "boom":
                raise StoreError("disk full")
            return original(**fields)  # type: ignore[arg-type]

        store.add_message = flaky  # type: ignore[method-assign]
        batch = [Message(text="如何退款", user_id="a"), Message(text="boom", user_id="b")]
        ok, failed = bot.handle_many(batch, return_exceptions=True)
        assert isinstance(ok, Reply) and ok.entry_id == "refund"
        assert isinstance(failed, StoreError)
        with pytest.raises(StoreError, match="disk full"):
            bot.handle_many(batch)


# -- through the API --------------------------------------------------------------------------


class CountingEncoder(HashingEncoder):
    """Counts query encodes (one per batch) and how many texts each had."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], *, kind: Kind = "query") -> np.ndarray:
        if kind == "query":
            with self._lock:
                self.calls.append(len(texts))
            time.sleep(0.01)  # a little like a real model: requests pile up meanwhile
        return super().encode(texts, kind=kind)


def test_concurrent_requests_share_encoder_calls(settings: Settings) -> None:
    """32 concurrent messages are answered correctly with far fewer encoder calls."""
    encoder = CountingEncoder()
    app = create_app(roomy(settings, batch_window_ms=20), encoder=encoder)
    bodies = [
        {"text": "如何退款" if i % 2 else "password reset", "user_id": f"u{i}"} for i in range(32)
    ]
    responses = asyncio.run(concurrently(app, bodies))
    assert all(r.status_code == 200 for r in responses)
    entries = [r.json()["entry_id"] for r in responses]
    assert entries == ["reset-password" if i % 2 == 0 else "refund" for i in range(32)]
    assert sum(encoder.calls) == 32
    assert len(encoder.calls) <= 8, encoder.calls


@pytest.mark.slow
def test_batched_answers_equal_single_answers_with_the_real_encoder(
    tmp_path: Path, e5: Encoder, demo_cache: Path
) -> None:
    """With the bundled e5 model, concurrent API requests get the same decisions as the
    library answering them one at a time."""
    settings = Settings(
        knowledge=bundled_knowledge_dir(),
        db=str(tmp_path / "api.db"),
        cache_dir=demo_cache,
    )
    texts = ["怎么申请退款", "How do I reset my password?", "能开发票吗", "where is my parcel"]
    texts += ["我要投诉!!!", "转人工", "do you ship abroad", "修改收货地址"]
    app = create_app(roomy(settings, batch_window_ms=20), encoder=e5)
    bodies = [{"text": t, "user_id": f"u{i}"} for i, t in enumerate(texts)]
    responses = asyncio.run(concurrently(app, bodies))
    batched = [(r.json()["decision"], r.json()["entry_id"]) for r in responses]
    single = settings.with_overrides(db=str(tmp_path / "single.db"))
    with AutoReply.from_settings(single, encoder=e5) as bot:
        alone = [bot.handle(t, user_id=f"u{i}") for i, t in enumerate(texts)]
    assert batched == [(r.decision.value, r.entry_id) for r in alone]
