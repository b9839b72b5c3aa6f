"""Bad input, table-driven: every case in ``CASES`` is sent to the service (TestClient, the
small FAQ, HashingEncoder, on SQLite and on PostgreSQL) and must get a clear error (4xx with
``{"error": {"type", "message"}}`` naming the field) or be handled correctly (answered or
escalated, stored verbatim, escaped where rendered). After every case ``/healthz`` answers and
a normal question is still answered from the FAQ. ``test_the_cases_are_counted`` prints how
many cases of each kind there are (``pytest -s``) for the closing note.

Kinds: empty text, size, invalid UTF-8, control characters, emoji and mixed scripts, wrong
JSON types, deep nesting, SQL injection, HTML/JS, knowledge uploads, knowledge reloads
(including a file rewritten while the reload runs).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from test_server import BACKENDS, agent, backend_settings, roomy, state

from autoreply.app import create_app
from autoreply.encoder import HashingEncoder, Kind
from autoreply.knowledge import load_knowledge
from autoreply.models import Role
from autoreply.store import AgentRole

JSON_ = "application/json"
JSON = {"Content-Type": JSON_}
MAX_TEXT = 4000  # ServerConfig.max_text_chars (default)
UPLOAD_LIMIT = 16 * 1024 * 1024  # autoreply.web.limits.UPLOAD_MAX_BYTES


class HookEncoder(HashingEncoder):
    """Runs ``on_build`` once, when the next index build encodes new FAQ texts: a moment
    inside a reload, after the knowledge files were read and before the new index answers."""

    def __init__(self) -> None:
        super().__init__()
        self.on_build: Callable[[], None] | None = None

    def encode(self, texts: Sequence[str], *, kind: Kind = "query") -> np.ndarray:
        hook, self.on_build = (self.on_build, None) if kind == "passage" else (None, None)
        if hook is not None:
            hook()
        return super().encode(texts, kind=kind)


@dataclass
class Ctx:
    """What a case can reach: the client, tokens, the knowledge folder, the store."""

    client: TestClient
    backend: str
    root: dict[str, str]
    alice: dict[str, str]
    knowledge: Path
    encoder: HookEncoder
    db: str
    tables: set[str] = field(default_factory=set)
    scratch: dict[str, Any] = field(default_factory=dict)

    @property
    def store(self) -> Any:
        return state(self.client).bot.store

    def stored(self, text: str) -> str:
        """``text`` as the backend keeps it (PostgreSQL text cannot hold NUL)."""
        return text.replace("\x00", "\ufffd") if self.backend == "postgres" else text


@dataclass(frozen=True)
class Case:
    id: str
    kind: str
    send: Callable[[Ctx], httpx.Response]
    status: int = 200
    error: str | None = None
    """The error type for a 4xx."""
    field: str | None = None
    """The field the error names (``errors[].field`` or ``problems[].field``)."""
    says: str | None = None
    """Text the error message contains."""
    check: Callable[[Ctx, httpx.Response], None] | None = None


pytestmark = pytest.mark.usefixtures("restore_autoreply_logging")


# -- how cases send -----------------------------------------------------------------------------


def user(case_id: str) -> str:
    return f"abuse-{case_id}"


def message(case_id: str, **body: Any) -> Callable[[Ctx], httpx.Response]:
    """POST /v1/messages with a user id of the case's own."""
    return lambda ctx: ctx.client.post("/v1/messages", json={"user_id": user(case_id), **body})


def raw(content: bytes, path: str = "/v1/messages", **headers: str) -> Callable[..., Any]:
    return lambda ctx: ctx.client.post(path, content=content, headers={**JSON, **headers})


def upload(name: str, data: bytes | Callable[[], bytes]) -> Callable[[Ctx], httpx.Response]:
    def send(ctx: Ctx) -> httpx.Response:
        content = data() if callable(data) else data
        return ctx.client.post(
            "/v1/admin/knowledge", headers=ctx.root, files={"file": (name, content)}
        )

    return send


def reload_with(name: str, data: bytes) -> Callable[[Ctx], httpx.Response]:
    """Put a file into the knowledge folder, reload, take the file away again."""

    def send(ctx: Ctx) -> httpx.Response:
        path = ctx.knowledge / name
        path.write_bytes(data)
        try:
            return ctx.client.post("/v1/admin/reload", headers=ctx.root)
        finally:
            path.unlink()

    return send


def get(path: str, *, as_: str = "alice", **params: Any) -> Callable[[Ctx], httpx.Response]:
    return lambda ctx: ctx.client.get(path, headers=getattr(ctx, as_), params=params or None)


# -- what cases check ---------------------------------------------------------------------------


def customer_text(ctx: Ctx, reply: dict[str, Any]) -> str:
    history = ctx.store.history(reply["conversation_id"])
    texts = [m.text for m in history if m.role is Role.CUSTOMER]
    assert texts, f"no customer message stored for {reply['conversation_id']}"
    return str(texts[-1])


def verbatim(text: str) -> Callable[[Ctx, httpx.Response], None]:
    """Handled, and the customer's text is stored exactly as sent."""

    def check(ctx: Ctx, response: httpx.Response) -> None:
        reply = response.json()
        assert reply["decision"] in ("answer", "clarify", "escalate") and reply["text"]
        assert customer_text(ctx, reply) == ctx.stored(text)

    return check


def answered(entry_id: str) -> Callable[[Ctx, httpx.Response], None]:
    def check(ctx: Ctx, response: httpx.Response) -> None:
        reply = response.json()
        assert (reply["decision"], reply["entry_id"]) == ("answer", entry_id), reply

    return check


def empty_prompt(ctx: Ctx, response: httpx.Response) -> None:
    """Asked what the customer needs: nothing to match, no ticket, no gap."""
    reply = response.json()
    assert (reply["decision"], reply["reason"]) == ("clarify", "empty_message")
    assert reply["ticket_id"] is None and reply["gap_id"] is None


def handled(ctx: Ctx, response: httpx.Response) -> None:
    """Answered, clarified or escalated (an escalation has its ticket)."""
    reply = response.json()
    assert reply["decision"] in ("answer", "clarify", "escalate") and reply["text"]
    if reply["decision"] == "escalate":
        assert ctx.store.get_ticket(reply["ticket_id"]).conversation_id == reply["conversation_id"]


def tables_intact(ctx: Ctx, response: httpx.Response) -> None:
    """Every table is still there and the store still counts rows."""
    assert table_names(ctx) == ctx.tables
    assert ctx.store.counts()["messages"] > 0


def sql_verbatim(text: str) -> Callable[[Ctx, httpx.Response], None]:
    def check(ctx: Ctx, response: httpx.Response) -> None:
        verbatim(text)(ctx, response)
        tables_intact(ctx, response)

    return check


def sql_field(name: str, value: str) -> Callable[[Ctx, httpx.Response], None]:
    """The injection string is stored verbatim in ``name`` (a message column)."""

    def check(ctx: Ctx, response: httpx.Response) -> None:
        reply = response.json()
        history = ctx.store.history(reply["conversation_id"])
        customer = next(m for m in history if m.role is Role.CUSTOMER)
        assert getattr(customer, name) == value
        tables_intact(ctx, response)

    return check


def lists_nothing(ctx: Ctx, response: httpx.Response) -> None:
    assert response.json() == []
    tables_intact(ctx, response)


def ticket_metadata(key: str, value: Any) -> Callable[[Ctx, httpx.Response], None]:
    """The escalation's ticket carries the metadata, readable as JSON by agents."""

    def check(ctx: Ctx, response: httpx.Response) -> None:
        reply = response.json()
        detail = ctx.client.get(f"/v1/tickets/{reply['ticket_id']}", headers=ctx.alice)
        assert detail.status_code == 200, detail.text
        assert detail.json()["ticket"]["context"]["metadata"][key] == value

    return check


def json_text(ctx: Ctx, response: httpx.Response) -> None:
    """HTML comes back as JSON text, never as a page."""
    assert response.headers["content-type"].startswith("application/json")
    reply = response.json()
    conversation = ctx.client.get(
        f"/v1/conversations/{reply['conversation_id']}",
        headers={"X-Conversation-Token": reply["conversation_token"]},
    )
    assert conversation.headers["content-type"].startswith("application/json")
    assert conversation.json()["messages"][0]["text"] == XSS


def feedback_on(ctx: Ctx, reply: httpx.Response, *, comment: str) -> httpx.Response:
    """Feedback on a reply, with the conversation token its widget got back."""
    body = reply.json()
    return ctx.client.post(
        "/v1/feedback",
        json={"message_id": body["message_id"], "helpful": False, "comment": comment},
        headers={"X-Conversation-Token": body["conversation_token"]},
    )


def report_escaped(fmt: str) -> Callable[[Ctx], httpx.Response]:
    """Gap questions with a script tag, three alike so they make a topic the report shows,
    then the weekly report in ``fmt``."""

    def send(ctx: Ctx) -> httpx.Response:
        for i, text in enumerate(("rocket launch", "rocket launch time", "the rocket launch")):
            reply = ctx.client.post(
                "/v1/messages", json={"text": f"{XSS} {text}", "user_id": f"xss-{fmt}-{i}"}
            )
            assert reply.json()["gap_id"] is not None, reply.text
        return ctx.client.get("/v1/insights/report", headers=ctx.alice, params={"format": fmt})

    return send


def no_script(ctx: Ctx, response: httpx.Response) -> None:
    assert "<script>" not in response.text and "&lt;script&gt;" in response.text


def asks(question: str, answer: str) -> Callable[[Ctx, httpx.Response], None]:
    """The upload answered; ``question`` now gets ``answer`` exactly as written."""

    def check(ctx: Ctx, response: httpx.Response) -> None:
        assert response.json()["entries"] >= 1
        reply = ctx.client.post(
            "/v1/messages", json={"text": question, "user_id": f"asks-{len(question)}"}
        ).json()
        assert reply["decision"] == "answer" and reply["text"] == answer, reply

    return check


def kept_in_folder(name: str) -> Callable[[Ctx, httpx.Response], None]:
    def check(ctx: Ctx, response: httpx.Response) -> None:
        assert response.json()["file"] == name
        assert (ctx.knowledge / name).is_file()
        assert not (ctx.knowledge.parent / name).exists()
        assert not (ctx.knowledge.parent.parent / name).exists()

    return check


def no_entries(ctx: Ctx, response: httpx.Response) -> None:
    """An empty file is accepted with no entries; the rest of the base keeps answering."""
    assert response.json()["entries"] == 0


def nothing_written(name: str) -> Callable[[Ctx, httpx.Response], None]:
    def check(ctx: Ctx, response: httpx.Response) -> None:
        assert not (ctx.knowledge / name).exists()

    return check


def table_names(ctx: Ctx) -> set[str]:
    if ctx.backend == "sqlite":
        with sqlite3.connect(ctx.db) as conn:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    else:
        import psycopg

        with psycopg.connect(ctx.db) as conn:
            rows = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchall()
    return {str(r[0]) for r in rows}


# -- knowledge rewritten while a reload runs ----------------------------------------------------


def race_faq(tag: str, version: str) -> bytes:
    """One knowledge file in two versions: same ids, different answers and one entry each."""
    entries = [
        {"id": f"race-{tag}", "question": f"race {tag} which version", "answer": version},
        {"id": f"race-{tag}-{version}", "question": f"only in {version} {tag}", "answer": version},
    ]
    return yaml.safe_dump(entries).encode()


def fingerprint_with(ctx: Ctx, name: str, data: bytes) -> str:
    """The fingerprint the knowledge folder has with ``name`` holding ``data``."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "knowledge"
        shutil.copytree(ctx.knowledge, copy)
        (copy / name).write_bytes(data)
        return load_knowledge(copy).fingerprint


def rewritten_during_reload(ctx: Ctx) -> httpx.Response:
    """The file is rewritten in place after the reload read it, before the new index
    answers. That reload serves version A whole; the next one version B whole."""
    tag = f"mid{ctx.backend}"
    path = ctx.knowledge / "race.yaml"
    a, b = race_faq(tag, "A"), race_faq(tag, "B")
    path.write_bytes(a)
    ctx.scratch["race"] = (tag, fingerprint_with(ctx, "race.yaml", a), b)
    ctx.encoder.on_build = lambda: path.write_bytes(b)
    return ctx.client.post("/v1/admin/reload", headers=ctx.root)


def old_then_new(ctx: Ctx, response: httpx.Response) -> None:
    tag, fp_a, b = ctx.scratch.pop("race")
    assert ctx.encoder.on_build is None, "the rewrite did not happen during the reload"
    assert response.json()["fingerprint"] == fp_a
    question = f"race {tag} which version"
    ask = ctx.client.post("/v1/messages", json={"text": question, "user_id": f"{tag}-a"})
    assert ask.json()["text"] == "A"
    fp_b = fingerprint_with(ctx, "race.yaml", b)
    again = ctx.client.post("/v1/admin/reload", headers=ctx.root)
    assert again.status_code == 200 and again.json()["fingerprint"] == fp_b
    asked = ctx.client.post("/v1/messages", json={"text": question, "user_id": f"{tag}-b"})
    assert asked.json()["text"] == "B"
    (ctx.knowledge / "race.yaml").unlink()
    assert ctx.client.post("/v1/admin/reload", headers=ctx.root).status_code == 200


def replaced_during_reloads(ctx: Ctx) -> httpx.Response:
    """A writer swaps the file between two versions (atomically, as editors and the upload
    do) as fast as it can while six reloads run: each reload serves one version whole."""
    tag = f"swap{ctx.backend}"
    path = ctx.knowledge / "swap.yaml"
    versions = {v: race_faq(tag, v) for v in "AB"}
    fingerprints = {fingerprint_with(ctx, "swap.yaml", data): v for v, data in versions.items()}
    path.write_bytes(versions["A"])
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            tmp = path.with_name(f".swap.{n}.tmp")
            tmp.write_bytes(versions["AB"[n % 2]])
            os.replace(tmp, path)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        results = [ctx.client.post("/v1/admin/reload", headers=ctx.root) for _ in range(6)]
    finally:
        stop.set()
        thread.join(10)
    served = []
    for result in results:
        assert result.status_code == 200, result.text
        served.append(fingerprints[result.json()["fingerprint"]])  # KeyError: a mix
    path.unlink()
    last = ctx.client.post("/v1/admin/reload", headers=ctx.root)
    ctx.scratch["swapped"] = served
    return last


def each_reload_whole(ctx: Ctx, response: httpx.Response) -> None:
    assert set(ctx.scratch.pop("swapped")) <= {"A", "B"}


# -- the cases ----------------------------------------------------------------------------------

SQLI = [
    "'; DROP TABLE messages; --",
    '" OR "1"="1',
    "1' OR '1'='1' --",
    "x'); DELETE FROM tickets; --",
    "1; UPDATE agents SET role = 'admin' --",
    "' UNION SELECT token_hash, 1 FROM agents --",
    "%' OR 1=1 --",
    "\\'; DROP TABLE gaps; --",
]
XSS = "<script>alert('x')</script><img src=x onerror=alert(1)>"
CONTROL = "nul\x00 esc\x1b[31mred\x1b[0m bell\x07 back\x08space"


def deep(depth: int, *, kind: str = "array") -> bytes:
    inner = "[" * depth + "]" * depth if kind == "array" else '{"a":' * depth + "1" + "}" * depth
    return ('{"text": "hi", "metadata": {"deep": ' + inner + "}}").encode()


def nested_list(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


# fmt: off
CASES: list[Case] = [
    # -- empty and whitespace-only text: the "what can I help you with" prompt
    Case("empty-text", "empty", message("empty-text", text=""), check=empty_prompt),
    Case("spaces", "empty", message("spaces", text="     "), check=empty_prompt),
    Case("tabs-newlines", "empty", message("tabs", text="\t\n\r\n \t"), check=empty_prompt),
    Case("ideographic-space", "empty", message("ideographic-space", text="\u3000\u3000"),
         check=empty_prompt),
    Case("zero-width-and-bom", "empty", message("zero-width-and-bom", text="\u200b\ufeff\u200b"),
         check=empty_prompt),
    # -- size
    Case("text-1mb", "size", message("text-1mb", text="x" * 1_000_000), 413, "too_large",
         says="the limit is 65536"),
    Case("text-1mb-chunked", "size",
         lambda ctx: ctx.client.post("/v1/messages", headers=JSON, content=iter(
             [b'{"text": "', *[b"y" * 65536] * 16, b'"}'])),
         413, "too_large"),
    Case("text-at-the-cap", "size", message("text-at-the-cap", text="z" * MAX_TEXT), check=handled),
    Case("text-over-the-cap", "size", message("text-over-the-cap", text="z" * (MAX_TEXT + 1)),
         422, "invalid", "text", says="limit is 4000"),
    Case("text-over-the-model-limit", "size", message("over-model", text="z" * 20_001),
         422, "invalid", "text"),
    Case("user-id-too-long", "size", message("long", text="hi", user_id="u" * 201),
         422, "invalid", "user_id"),
    Case("message-id-too-long", "size", message("long-mid", text="hi", message_id="m" * 201),
         422, "invalid", "message_id"),
    # -- invalid UTF-8 and broken Unicode
    Case("utf8-invalid-byte", "utf8", raw(b'{"text": "caf\xe9 \xff"}'), 422, "invalid", "body",
         says="not valid UTF-8"),
    Case("utf8-overlong", "utf8", raw(b'{"text": "\xc0\xaf"}'), 422, "invalid", "body"),
    Case("utf8-truncated", "utf8", raw(b'{"text": "\xe4\xb8"}'), 422, "invalid", "body"),
    Case("utf8-declared-latin1", "utf8",
         raw('{"text": "café"}'.encode("latin-1"), **{"Content-Type": f"{JSON_}; charset=latin-1"}),
         422, "invalid", "body"),
    Case("lone-surrogate-in-text", "utf8", raw(b'{"text": "a\\ud800b"}'), 422, "invalid", "text"),
    Case("lone-surrogate-in-metadata", "utf8",
         raw(b'{"text": "hi", "user_id": "sur", "metadata": {"name": "\\udfff"}}'),
         422, "invalid", "metadata", says="lone surrogate"),
    Case("utf16-with-bom", "utf8",
         raw('{"text": "如何退款", "user_id": "abuse-utf16"}'.encode("utf-16")),
         check=answered("refund")),
    # -- control characters: stored verbatim (PostgreSQL turns NUL into U+FFFD)
    Case("nul-and-escapes", "control", message("nul-and-escapes", text=CONTROL),
         check=verbatim(CONTROL)),
    Case("bidi-override", "control", message("bidi", text="refund \u202egnp.exe\u202c"),
         check=verbatim("refund \u202egnp.exe\u202c")),
    Case("c1-controls", "control", message("c1", text="a\x7fb\x85c\x9bd"),
         check=verbatim("a\x7fb\x85c\x9bd")),
    Case("line-separators", "control", message("ls", text="a\u2028b\u2029c\x0bd\x0ce"),
         check=verbatim("a\u2028b\u2029c\x0bd\x0ce")),
    Case("nul-only", "control", message("nul-only", text="\x00\x00"), check=handled),
    # -- emoji and mixed scripts: matched on the normalized text, or escalated
    Case("emoji-around-a-question", "emoji", message("emoji-q", text="😀😀 如何退款 🙏"),
         check=answered("refund")),
    Case("traditional-with-emoji", "emoji", message("trad", text="怎麼退款？👍"),
         check=answered("refund")),
    Case("fullwidth-latin", "emoji",
         message("fullwidth", text="ｆｏｒｇｏｔ ｍｙ ｐａｓｓｗｏｒｄ"),
         check=answered("reset-password")),
    Case("emoji-only", "emoji", message("emoji-only", text="😀🙏🎉"), check=handled),
    Case("zwj-family-emoji", "emoji", message("zwj", text="👨\u200d👩\u200d👧 refund?"),
         check=verbatim("👨\u200d👩\u200d👧 refund?")),
    Case("mixed-scripts", "emoji",
         message("mixed", text="How do I 退款 пожалуйста مرحبا שלום नमस्ते"),
         check=verbatim("How do I 退款 пожалуйста مرحبا שלום नमस्ते")),
    Case("combining-marks", "emoji", message("zalgo", text="r̵̛e͟f̸u̷n͝d̶ ̴p͘l͞e͢a͡s͠e͞"),
         check=handled),
    Case("escaped-surrogate-pair", "emoji",
         raw(b'{"text": "\\ud83d\\ude00 \\u5982\\u4f55\\u9000\\u6b3e", "user_id": "abuse-pair"}'),
         check=answered("refund")),
    # -- JSON with wrong types: 422 naming the field
    Case("text-number", "types", message("t-num", text=5), 422, "invalid", "text"),
    Case("text-null", "types", message("t-null", text=None), 422, "invalid", "text"),
    Case("text-list", "types", message("t-list", text=["a"]), 422, "invalid", "text"),
    Case("text-object", "types", message("t-obj", text={"a": 1}), 422, "invalid", "text"),
    Case("text-missing", "types", message("t-missing"), 422, "invalid", "text"),
    Case("user-id-number", "types",
         lambda ctx: ctx.client.post("/v1/messages", json={"text": "hi", "user_id": 7}),
         422, "invalid", "user_id"),
    Case("metadata-list", "types", message("m-list", text="hi", metadata=[1]),
         422, "invalid", "metadata"),
    Case("message-id-number", "types", message("mid-num", text="hi", message_id=5),
         422, "invalid", "message_id"),
    Case("channel-bool", "types", message("ch-bool", text="hi", channel=True),
         422, "invalid", "channel"),
    Case("unknown-field", "types", message("extra", text="hi", admin=True),
         422, "invalid", "admin"),
    Case("body-array", "types", raw(b'[{"text": "hi"}]'), 422, "invalid", "body",
         says="must be a JSON object"),
    Case("body-string", "types", raw(b'"hi"'), 422, "invalid", "body"),
    Case("body-null", "types", raw(b"null"), 422, "invalid", "body"),
    Case("body-not-json", "types", raw(b"{text: hi}"), 422, "invalid", "body",
         says="not valid JSON"),
    Case("body-as-form", "types",
         lambda ctx: ctx.client.post("/v1/messages", data={"text": "hi"}),
         422, "invalid", "body", says="Content-Type: application/json"),
    Case("integer-with-5000-digits", "types",
         raw(b'{"text": "hi", "metadata": {"n": 1' + b"0" * 5000 + b"}}"),
         422, "invalid", "body"),
    Case("feedback-wrong-types", "types",
         lambda ctx: ctx.client.post("/v1/feedback", json={"message_id": "x", "helpful": "maybe"}),
         422, "invalid", "message_id"),
    Case("ticket-id-not-a-number", "types", get("/v1/tickets/1 OR 1=1"),
         422, "invalid", "ticket_id"),
    Case("ticket-id-past-64-bits", "types", get(f"/v1/tickets/{2**70}"), 404, "not_found"),
    Case("feedback-id-past-64-bits", "types",
         lambda ctx: ctx.client.post(
             "/v1/feedback", json={"message_id": 2**70, "helpful": True}, headers=ctx.alice),
         404, "not_found"),
    Case("queue-status-unknown", "types", get("/v1/tickets", status="'; DROP TABLE tickets --"),
         422, "invalid", "status"),
    # -- deeply nested JSON
    Case("nested-100", "nesting",
         message("nested-100", text="rocket launch", metadata={"deep": nested_list(100)}),
         check=ticket_metadata("deep", nested_list(100))),
    Case("nested-arrays-5000", "nesting", raw(deep(5000)), 422, "invalid", "body",
         says="nested too deeply"),
    Case("nested-objects-5000", "nesting", raw(deep(5000, kind="object")), 422, "invalid", "body"),
    Case("nested-arrays-30000", "nesting", raw(deep(30000)), 422, "invalid", "body"),
    # -- SQL injection in every field: stored verbatim, every table still there
    Case("sqli-text", "sqli", message("sqli-text", text=SQLI[0]), check=sql_verbatim(SQLI[0])),
    Case("sqli-user-id", "sqli", lambda ctx: ctx.client.post(
        "/v1/messages", json={"text": "hi", "user_id": SQLI[1]}),
        check=sql_field("user_id", SQLI[1])),
    Case("sqli-conversation-id", "sqli",
         message("sqli-conv", text="hi", conversation_id=SQLI[2]),
         check=sql_field("conversation_id", f"api:{SQLI[2]}")),
    Case("sqli-message-id", "sqli", message("sqli-mid", text="hi", message_id=SQLI[3]),
         check=sql_field("external_id", SQLI[3])),
    Case("sqli-channel", "sqli", message("sqli-ch", text="hi", channel=SQLI[4][:50]),
         check=sql_field("conversation_id", f"api:{SQLI[4][:50]}:{user('sqli-ch')}")),
    Case("sqli-metadata", "sqli",
         message("sqli-meta", text="I want to talk to a human", metadata={SQLI[5]: SQLI[6]}),
         check=ticket_metadata(SQLI[5], SQLI[6])),
    Case("sqli-feedback-comment", "sqli", lambda ctx: feedback_on(
        ctx, ctx.client.post("/v1/messages", json={"text": "如何退款", "user_id": "sqli-fb"}),
        comment=SQLI[7]), 201, check=tables_intact),
    Case("sqli-conversation-path", "sqli", get(f"/v1/conversations/{SQLI[0]}"), 404,
         "not_found"),
    Case("sqli-queue-category", "sqli", get("/v1/tickets", category=SQLI[6]),
         check=lists_nothing),
    Case("sqli-interceptions-agent", "sqli",
         get("/v1/admin/interceptions", as_="root", agent=SQLI[1]), check=lists_nothing),
    Case("sqli-report-week", "sqli", get("/v1/insights/report", week=SQLI[2]),
         422, "invalid", "week"),
    # -- HTML and JavaScript: stored and returned as text, escaped where rendered
    Case("html-in-message", "html", message("html", text=XSS), check=json_text),
    Case("html-in-metadata", "html",
         message("html-meta", text="I want to talk to a human", metadata={"page": XSS}),
         check=ticket_metadata("page", XSS)),
    Case("html-gap-in-html-report", "html", report_escaped("html"), check=no_script),
    Case("html-gap-in-markdown-report", "html", report_escaped("md"), check=no_script),
    Case("html-in-faq-entry", "html",
         upload("html.yaml", yaml.safe_dump([{"id": "html", "question": f"{XSS} html faq",
                                              "answer": XSS}]).encode()),
         check=asks(f"{XSS} html faq", XSS)),
    Case("sqli-in-faq-entry", "sqli",
         upload("sqli.json", json.dumps([{"id": SQLI[0], "question": "robert tables faq",
                                          "answer": SQLI[1], "category": SQLI[2]}]).encode()),
         check=asks("robert tables faq", SQLI[1])),
    # -- knowledge files through the admin upload
    Case("upload-over-the-limit", "knowledge",
         upload("huge.yaml", lambda: b"# " + b"x" * UPLOAD_LIMIT), 413, "too_large",
         says=f"the limit is {UPLOAD_LIMIT}"),
    Case("upload-huge-answer", "knowledge",
         upload("big.json", json.dumps([{"id": "big", "question": "giant answer faq",
                                         "answer": "y" * 4_000_000}]).encode()),
         check=asks("giant answer faq", "y" * 4_000_000)),
    Case("yaml-bad-indentation", "knowledge",
         upload("bad.yaml", b"- id: a\n  question: q\n   answer: : x\n"), 422,
         "knowledge_invalid", says="bad.yaml:"),
    Case("yaml-tab", "knowledge", upload("tab.yaml", b"- id: a\n\tquestion: q\n"), 422,
         "knowledge_invalid", says="tab"),
    Case("yaml-python-tag", "knowledge",
         upload("evil.yaml", b"- !!python/object/apply:os.system ['touch /tmp/pwned']\n"),
         422, "knowledge_invalid", check=nothing_written("evil.yaml")),
    Case("yaml-billion-laughs", "knowledge", upload("lol.yaml", b"".join(
        b"- &l%d [%s]\n" % (i, b",".join([b"*l%d" % (i - 1) if i else b'"lol"'] * 9))
        for i in range(9))), 422, "knowledge_invalid", says="must be a mapping"),
    Case("yaml-deep", "knowledge", upload("deep.yaml", b"[" * 50_000 + b"]" * 50_000), 422,
         "knowledge_invalid"),
    Case("yaml-lone-surrogate", "knowledge",
         upload("s.yaml", b'- id: s\n  question: "x \\ud800"\n  answer: a\n'), 422,
         "knowledge_invalid"),
    Case("json-truncated", "knowledge", upload("cut.json", b'[{"id": "a", "question": '),
         422, "knowledge_invalid", says="cut.json:1"),
    Case("json-deep", "knowledge", upload("deep.json", b"[" * 50_000 + b"]" * 50_000), 422,
         "knowledge_invalid"),
    Case("json-wrong-types", "knowledge",
         upload("types.json", json.dumps([{"id": 5, "question": ["q"], "answer": {"a": 1},
                                           "variants": "x", "escalate": "maybe"}]).encode()),
         422, "knowledge_invalid", "question"),
    Case("json-not-a-list", "knowledge", upload("str.json", b'"hello"'), 422,
         "knowledge_invalid", says="must be a list of entries"),
    Case("json-lone-surrogate", "knowledge",
         upload("s.json", b'[{"id": "s", "question": "q \\udfff", "answer": "a"}]'), 422,
         "knowledge_invalid", "question", says="lone surrogate"),
    Case("jsonl-bad-line", "knowledge",
         upload("lines.jsonl", b'{"id": "a", "question": "q", "answer": "a"}\nnot json\n'),
         422, "knowledge_invalid", says="lines.jsonl:2"),
    Case("csv-unknown-columns", "knowledge", upload("cols.csv", b"a,b,c\n1,2,3\n"), 422,
         "knowledge_invalid", "a"),
    Case("csv-missing-answer", "knowledge",
         upload("short.csv", b"id,question,answer\nx,some question,\n"), 422,
         "knowledge_invalid", "answer"),
    Case("csv-not-utf8", "knowledge",
         upload("latin.csv", b"id,question,answer\nx,caf\xe9,a\n"), 422, "knowledge_invalid",
         says="not valid UTF-8"),
    Case("xlsx-not-a-workbook", "knowledge", upload("book.xlsx", b"PK\x03\x04garbage"), 422,
         "knowledge_invalid", says="Excel"),
    Case("id-clash-with-another-file", "knowledge",
         upload("clash.yaml", yaml.safe_dump([{"id": "refund", "question": "clash q",
                                               "answer": "a"}]).encode()),
         422, "knowledge_invalid", says="refund", check=nothing_written("clash.yaml")),
    Case("empty-file", "knowledge", upload("empty.yaml", b""), check=no_entries),
    Case("not-an-faq-file-name", "knowledge", upload("notes.exe", b"MZ"), 422, "invalid",
         "file"),
    Case("no-file-part", "knowledge",
         lambda ctx: ctx.client.post("/v1/admin/knowledge", headers=ctx.root, data={"x": "y"}),
         422, "invalid", "file"),
    Case("broken-multipart", "knowledge", lambda ctx: ctx.client.post(
        "/v1/admin/knowledge", content=b"--xx\r\ngarbage",
        headers={**ctx.root, "Content-Type": "multipart/form-data; boundary=xx"}),
        422, "invalid", "file"),
    Case("path-traversal-name", "knowledge",
         upload("../../traversal.yaml", b"- id: trav\n  question: traversal faq\n  answer: t\n"),
         check=kept_in_folder("traversal.yaml")),
    # -- knowledge files in the folder, then POST /v1/admin/reload: refused, old index kept
    Case("reload-malformed-yaml", "reload", reload_with("broken.yaml", b"- id: [\n"), 422,
         "knowledge_invalid", says="broken.yaml"),
    Case("reload-missing-answer", "reload",
         reload_with("noanswer.yaml", b"- id: x\n  question: q\n"), 422, "knowledge_invalid",
         "answer"),
    Case("reload-not-utf8", "reload", reload_with("latin.csv", b"id,question,answer\n\xff,q,a\n"),
         422, "knowledge_invalid", says="not valid UTF-8"),
    Case("reload-wrong-types", "reload",
         reload_with("types.json", b'[{"id": "t", "question": 1, "answer": true}]'), 422,
         "knowledge_invalid", "question"),
    Case("reload-file-rewritten-mid-reload", "reload", rewritten_during_reload,
         check=old_then_new),
    Case("reload-file-swapped-during-reloads", "reload", replaced_during_reloads,
         check=each_reload_whole),
]
# fmt: on


# -- the suite ------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def ctx(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    encoder = HookEncoder()
    with backend_settings(request, tmp_path_factory) as settings:
        app = create_app(roomy(settings), encoder=encoder)
        with TestClient(app, raise_server_exceptions=False) as client:
            c = Ctx(
                client=client,
                backend=request.param,
                root=agent(client, "root", AgentRole.ADMIN),
                alice=agent(client, "alice"),
                knowledge=Path(settings.knowledge),
                encoder=encoder,
                db=settings.db,
            )
            c.tables = table_names(c)
            yield c


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_a_clear_answer_and_the_service_stays_up(ctx: Ctx, case: Case) -> None:
    """The case's status; a 4xx is ``{"error": {type, message}}`` naming the field; after it
    the service is healthy and answers a normal question from the FAQ."""
    response = case.send(ctx)
    assert response.status_code == case.status, response.text[:2000]
    if case.status >= 400:
        body = response.json()["error"]
        assert body["type"] == case.error and body["message"], body
        if case.field is not None:
            named = [e["field"] for e in body.get("errors", body.get("problems", []))]
            assert case.field in named, body
        if case.says is not None:
            assert case.says in body["message"], body
    if case.check is not None:
        case.check(ctx, response)
    assert ctx.client.get("/healthz").status_code == 200
    normal = ctx.client.post("/v1/messages", json={"text": "如何退款", "user_id": f"ok-{case.id}"})
    assert normal.status_code == 200 and normal.json()["entry_id"] == "refund", normal.text


def test_the_cases_are_counted(record_property: Callable[[str, object], None]) -> None:
    """Every case has a unique id and a known kind; the counts by kind are printed."""
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    kinds = Counter(c.kind for c in CASES)
    handled_ = sum(c.status < 400 for c in CASES)
    print(
        f"\n{len(CASES)} bad-input cases: {dict(kinds)}; {handled_} handled, "
        f"{len(CASES) - handled_} refused with a clear error"
    )
    record_property("bad_input_cases", len(CASES))
    assert set(kinds) == {
        "empty",
        "size",
        "utf8",
        "control",
        "emoji",
        "types",
        "nesting",
        "sqli",
        "html",
        "knowledge",
        "reload",
    }
