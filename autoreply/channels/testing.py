"""Test doubles for channels: a fake platform API, a recording handler, and an app to mount on.

``FakePlatform`` is an ``httpx.MockTransport`` with scripted answers per route, so outbound
sends are tested without the internet::

    platform = FakePlatform()
    platform.route("POST", "/chat.postMessage", 503, {"ok": True})  # fails once, then works
    slack = SlackChannel(config, platform.client())
    ...
    assert len(platform.calls("/chat.postMessage")) == 2
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI

from autoreply.channels.base import Channel, Handler
from autoreply.models import Action, Message, Reason, Reply

Answer = httpx.Response | dict[str, Any] | int | Exception
"""A scripted answer: a response, a JSON body (200), a bare status, or an exception to raise."""


@dataclass
class _Route:
    method: str
    path: str
    answers: list[Answer]
    served: int = 0


@dataclass
class FakePlatform:
    """Records every request; answers from routes matched by method and URL path suffix.

    A route's answers are used in order and the last one repeats; an unrouted request gets 404.
    """

    requests: list[httpx.Request] = field(default_factory=list)
    _routes: list[_Route] = field(default_factory=list)

    def route(self, method: str, path: str, *answers: Answer) -> None:
        self._routes.append(_Route(method.upper(), path, list(answers) or [{}]))

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self._answer))

    def calls(self, path: str) -> list[httpx.Request]:
        """Requests whose URL path ends with ``path``."""
        return [r for r in self.requests if r.url.path.endswith(path)]

    def json(self, path: str) -> list[Any]:
        """The JSON bodies sent to ``path``."""
        return [json.loads(r.content) for r in self.calls(path)]

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for route in self._routes:
            if route.method == request.method and request.url.path.endswith(route.path):
                answer = route.answers[min(route.served, len(route.answers) - 1)]
                route.served += 1
                if isinstance(answer, Exception):
                    raise answer
                if isinstance(answer, int):
                    return httpx.Response(answer, json={"error": f"HTTP {answer}"})
                if isinstance(answer, dict):
                    return httpx.Response(200, json=answer)
                return answer
        return httpx.Response(404, json={"error": "no such route on the fake platform"})


class RecordingHandler:
    """A ``handle`` that records messages and answers each with ``text``.

    A message id seen before is answered with ``duplicate=True``, like the real bot.
    """

    def __init__(self, text: str = "canned answer", *, reason: Reason = Reason.CONFIDENT) -> None:
        self.text = text
        self.reason = reason
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> Reply:
        seen = {m.message_id for m in self.messages if m.message_id}
        self.messages.append(message)
        return Reply(
            decision=Action.ANSWER if self.reason is Reason.CONFIDENT else Action.ESCALATE,
            reason=self.reason,
            text=self.text,
            conversation_id=message.conversation,
            duplicate=message.message_id in seen,
        )


def mount(channels: Sequence[Channel], handle: Handler) -> FastAPI:
    """An app with each channel's router under ``/channels/{name}``, as the server mounts them."""
    app = FastAPI()
    for channel in channels:
        app.include_router(channel.router(handle), prefix=f"/channels/{channel.name}")
    return app
