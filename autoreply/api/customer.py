"""The customer side: send a message, read a conversation, give feedback.

``POST /v1/messages`` is the generic webhook: any system that can POST JSON gets the bot's
``Reply`` back synchronously. Its identity is its route: whatever the body says, the message
is the ``api`` channel's, and the body's ``channel`` and ``conversation_id`` only name a
conversation inside that namespace (``"shop:u7"`` is stored as ``"api:shop:u7"``), so it can
never join, read or act on another channel's conversation.

Trust (see the README's trust model):

- With ``channels.generic.webhook_secret`` set, every request must be signed
  (``X-Autoreply-Timestamp``, ``X-Autoreply-Signature``; ``channels.generic.sign_request``)
  and only then may its metadata claim VIP, priority or a customer identity. Without a
  secret, requests are anonymous: those keys are dropped (and logged, not answered).
- The reply that starts a conversation carries ``conversation_token``, once. Reading the
  conversation (``GET /v1/conversations/{id}``), writing more messages to it (unsigned) and
  giving feedback on its replies need that token (``X-Conversation-Token``) or an agent's
  bearer token. An unknown and a forbidden conversation get the same 404.

A repeated ``message_id`` returns the first reply whole (``duplicate: true``); the same id
with another text is a 409.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request, status

from autoreply.api.auth import BearerDep, agent_for
from autoreply.api.schemas import Conversation, FeedbackIn
from autoreply.channels.base import check_fresh, reject, same
from autoreply.channels.generic import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_request
from autoreply.errors import NotFoundError
from autoreply.models import TRUSTED_METADATA, Feedback, Message, MessageIn, Reply
from autoreply.store import hash_token, new_token
from autoreply.web.errors import ERROR_RESPONSES, Forbidden, Unauthorized
from autoreply.web.state import ServiceState, StateDep

log = logging.getLogger("autoreply.api")

router = APIRouter(prefix="/v1", tags=["customer"])

API_CHANNEL = "api"
"""The channel every ``POST /v1/messages`` message is stored under."""
TOKEN_HEADER = "X-Conversation-Token"

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
            "metadata": {"name": "王女士", "page": "/orders"},
        },
    },
}


async def signed_sender(request: Request, state: StateDep) -> bool:
    """True when the request carries a valid webhook signature; 401 naming what is wrong
    when a webhook secret is set and it does not; False (anonymous) when none is set."""
    cfg = state.settings.channels.generic
    if not cfg.webhook_secret:
        return False
    timestamp = request.headers.get(TIMESTAMP_HEADER, "")
    signature = request.headers.get(SIGNATURE_HEADER, "")
    if not timestamp or not signature:
        raise reject(
            request,
            "generic",
            "missing_signature",
            f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER}: a webhook secret is set, so "
            "every request must be signed (see channels.generic.sign_request)",
        )
    expected = sign_request(await request.body(), cfg.webhook_secret, timestamp)
    if not same(signature.strip(), expected):
        raise reject(
            request,
            "generic",
            "bad_signature",
            f"{SIGNATURE_HEADER} does not match: sign '<timestamp>.' + the exact body bytes "
            "with HMAC-SHA256 under the webhook secret",
        )
    check_fresh(request, "generic", timestamp, cfg.max_skew_seconds)
    return True


SignedDep = Annotated[bool, Depends(signed_sender)]
TokenDep = Annotated[
    str | None,
    Header(
        alias=TOKEN_HEADER,
        description="The conversation_token of the reply that started the conversation.",
    ),
]


def namespaced(body: MessageIn, *, verified: bool) -> Message:
    """The webhook body as an ``api``-channel message: the body's channel and conversation
    id become a name inside the ``api`` namespace; an unsigned sender's trusted metadata is
    dropped (and logged)."""
    name = body.conversation_id or f"{body.channel}:{body.user_id}"
    conversation = name if name.startswith(f"{API_CHANNEL}:") else f"{API_CHANNEL}:{name}"
    message_id = body.message_id
    if message_id and body.channel != API_CHANNEL:
        message_id = f"{body.channel}:{message_id}"  # ids stay unique per named channel
    message = Message(
        **body.model_dump(exclude={"conversation_id", "channel", "message_id"}),
        conversation_id=conversation,
        channel=API_CHANNEL,
        message_id=message_id,
        verified=verified,
    )
    if verified:
        return message
    dropped = sorted(TRUSTED_METADATA & message.metadata.keys())
    if dropped:
        log.warning(
            "untrusted metadata ignored",
            extra={"conversation_id": conversation, "keys": dropped},
        )
    return message.untrusted()


def opens(key: str | None, token: str | None) -> bool:
    """Whether ``token`` is the customer token whose sha256 is the conversation's ``key``
    (constant-time; no key or no token never opens)."""
    return key is not None and token is not None and same(hash_token(token), key)


def token_opens(state: ServiceState, conversation_id: str, token: str | None) -> bool:
    """Whether ``token`` opens the stored conversation ``conversation_id``."""
    return bool(token) and opens(state.bot.store.conversation_key(conversation_id), token)


def _is_retry(state: ServiceState, message: Message) -> bool:
    """Whether ``message`` repeats one already stored (same id, conversation and text): a
    retry gets its first reply back even without the token (which only that reply had)."""
    if not message.message_id:
        return False
    first = state.bot.store.find_message(channel=API_CHANNEL, external_id=message.message_id)
    return (
        first is not None
        and first.conversation_id == message.conversation
        and first.text == message.text
    )


def not_found(conversation_id: str) -> NotFoundError:
    # The same words for a conversation that does not exist and one the caller may not
    # read: the answer must not tell an attacker which ids are taken.
    return NotFoundError(
        f"no conversation '{conversation_id}' for these credentials; it is "
        f"Reply.conversation_id, read with the {TOKEN_HEADER} its first reply returned "
        "or an agent's bearer token"
    )


@router.post(
    "/messages",
    response_model=Reply,
    responses={k: ERROR_RESPONSES[k] for k in (401, 403, 409, 422, 429)},
    summary="Send a customer message; get the bot's reply",
)
async def post_message(
    body: Annotated[MessageIn, Body(openapi_examples=_EXAMPLES)],
    state: StateDep,
    signed: SignedDep,
    token: TokenDep = None,
) -> Reply:
    """Answer, clarify or escalate one message. ``decision`` says which; on escalation
    ``ticket_id`` is the ticket a person will pick up. Use ``message_id`` for retries: the
    same id returns the first reply (``duplicate: true``), another text under it is a 409.
    The reply that starts a conversation carries its ``conversation_token``; unsigned
    requests that continue it send the token as ``X-Conversation-Token``."""
    message = namespaced(body, verified=signed)
    conversation = message.conversation
    store = state.bot.store
    key = await asyncio.to_thread(store.conversation_key, conversation)
    allowed = signed or key is None or opens(key, token)
    if not allowed and not await asyncio.to_thread(_is_retry, state, message):
        raise Forbidden(
            f"conversation '{conversation}' was started by another client: send its "
            f"{TOKEN_HEADER} (the conversation_token of its first reply), or start a new "
            "conversation"
        )
    fresh = key is None and not await asyncio.to_thread(store.history, conversation, limit=1)
    reply = await state.handle(message)
    if fresh and not reply.duplicate:
        issued = new_token()
        if await asyncio.to_thread(store.set_conversation_key, conversation, hash_token(issued)):
            reply = reply.model_copy(update={"conversation_token": issued})
    return reply


@router.get(
    "/conversations/{conversation_id:path}",
    response_model=Conversation,
    responses={k: ERROR_RESPONSES[k] for k in (401, 404)},
    summary="A conversation's messages, including agent replies",
)
def get_conversation(
    conversation_id: str,
    state: StateDep,
    credentials: BearerDep,
    token: TokenDep = None,
    after: Annotated[int | None, Query(description="Only messages with a larger id.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 200,
) -> Conversation:
    """Oldest first. Needs the conversation's ``X-Conversation-Token`` (a web widget polling
    its own conversation) or an agent's bearer token. Poll with ``after`` set to the last
    message id you have to receive agent replies on the generic channel. 404 when the
    conversation does not exist or the credentials do not open it."""
    if credentials is None and not token:
        raise Unauthorized(
            f"reading a conversation needs its {TOKEN_HEADER} (returned with its first "
            "reply) or an agent's 'Authorization: Bearer <token>'"
        )
    if credentials is not None:
        agent_for(state, credentials.credentials)
    elif not token_opens(state, conversation_id, token):
        raise not_found(conversation_id)
    messages = state.bot.store.history(conversation_id)
    if not messages:
        raise not_found(conversation_id)
    if after is not None:
        messages = [m for m in messages if m.id > after]
    return Conversation(conversation_id=conversation_id, messages=messages[:limit])


@router.post(
    "/feedback",
    response_model=Feedback,
    status_code=status.HTTP_201_CREATED,
    responses={k: ERROR_RESPONSES[k] for k in (401, 404, 422)},
    summary="Was the bot's answer helpful?",
)
def post_feedback(
    body: FeedbackIn,
    state: StateDep,
    signed: SignedDep,
    credentials: BearerDep,
    token: TokenDep = None,
) -> Feedback:
    """``message_id`` is the ``message_id`` of the bot's ``Reply``. Needs the same
    credential as reading its conversation (``X-Conversation-Token`` or an agent's bearer
    token), or a signed request: votes teach the FAQ, so nobody votes on others' answers. The
    first vote on an answer counts: a not-helpful one logs its question as an FAQ gap."""
    if credentials is None and not token and not signed:
        raise Unauthorized(
            f"feedback needs the conversation's {TOKEN_HEADER} or an agent's bearer token"
        )
    store = state.bot.store
    missing = NotFoundError(f"no bot message {body.message_id} for these credentials")
    try:
        message = store.get_message(body.message_id)
    except NotFoundError:
        raise missing from None
    if credentials is not None:
        agent_for(state, credentials.credentials)
    elif signed:
        if message.channel != API_CHANNEL:  # the webhook's key opens only its own namespace
            raise missing
    elif not token_opens(state, message.conversation_id, token):
        raise missing
    return state.bot.feedback(body.message_id, helpful=body.helpful, comment=body.comment)
