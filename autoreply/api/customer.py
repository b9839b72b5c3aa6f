"""The customer side: send a message, read a conversation, give feedback.

``POST /v1/messages`` is the generic webhook: any system that can POST JSON gets the bot's
``Reply`` back synchronously. A repeated ``message_id`` (per channel) returns the first reply
with ``duplicate: true`` and is not stored twice, also when the repeats arrive at once.
Agent replies made later show up in ``GET /v1/conversations/{id}`` (poll with ``after``), or
are POSTed to the generic channel's callback URL when one is configured.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, status

from autoreply.api.errors import ERROR_RESPONSES
from autoreply.api.schemas import Conversation, FeedbackIn
from autoreply.api.state import StateDep
from autoreply.errors import NotFoundError
from autoreply.models import Feedback, Message, Reply

router = APIRouter(prefix="/v1", tags=["customer"])

_EXAMPLES: dict[str, Any] = {
    "english": {
        "summary": "A question in English",
        "value": {"text": "How do I reset my password?", "user_id": "u42", "message_id": "m-1"},
    },
    "chinese": {
        "summary": "A question in Chinese, with a conversation id and metadata",
        "value": {
            "text": "怎么申请退款？",
            "user_id": "u7",
            "conversation_id": "shop:u7",
            "message_id": "m-2",
            "metadata": {"vip": True, "name": "王女士"},
        },
    },
}


@router.post(
    "/messages",
    response_model=Reply,
    responses={k: ERROR_RESPONSES[k] for k in (422, 429)},
    summary="Send a customer message; get the bot's reply",
)
async def post_message(
    message: Annotated[Message, Body(openapi_examples=_EXAMPLES)], state: StateDep
) -> Reply:
    """Answer, clarify or escalate one message. ``decision`` says which; on escalation
    ``ticket_id`` is the ticket a person will pick up. Use ``message_id`` for retries: the
    same id on the same channel returns the first reply (``duplicate: true``)."""
    return await state.handle(message)


@router.get(
    "/conversations/{conversation_id:path}",
    response_model=Conversation,
    responses={404: ERROR_RESPONSES[404]},
    summary="A conversation's messages, including agent replies",
)
def get_conversation(
    conversation_id: str,
    state: StateDep,
    after: Annotated[int | None, Query(description="Only messages with a larger id.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 200,
) -> Conversation:
    """Oldest first. Poll with ``after`` set to the last message id you have to receive
    agent replies on the generic channel. 404 when the conversation has no messages."""
    messages = state.bot.store.history(conversation_id)
    if not messages:
        raise NotFoundError(
            f"no conversation '{conversation_id}'; it is Reply.conversation_id "
            "(default '<channel>:<user_id>')"
        )
    if after is not None:
        messages = [m for m in messages if m.id > after]
    return Conversation(conversation_id=conversation_id, messages=messages[:limit])


@router.post(
    "/feedback",
    response_model=Feedback,
    status_code=status.HTTP_201_CREATED,
    responses={k: ERROR_RESPONSES[k] for k in (404, 422)},
    summary="Was the bot's answer helpful?",
)
def post_feedback(body: FeedbackIn, state: StateDep) -> Feedback:
    """``message_id`` is the ``message_id`` of the bot's ``Reply``."""
    return state.bot.store.add_feedback(body.message_id, helpful=body.helpful, comment=body.comment)
