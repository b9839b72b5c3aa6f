"""Customer satisfaction (CSAT) through the generic webhook: ``POST /v1/csat``.

After a ticket is resolved the customer's widget (or your backend) sends a 1-5 rating. The
trust model holds: only the conversation's own customer rates, with its
``X-Conversation-Token`` or a signed request for an ``api`` conversation; an agent's token
does not rate. A conversation the credential does not open is the same 404 as one that does
not exist. One rating per resolved ticket (a second is 409); a ticket not resolved yet is 409;
a rating outside 1-5 is 422 naming ``rating``.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, status

from autoreply.api.customer import (
    API_CHANNEL,
    TOKEN_HEADER,
    SignedDep,
    TokenDep,
    not_found,
    token_opens,
)
from autoreply.api.schemas import RatingIn
from autoreply.errors import ConflictError, NotFoundError
from autoreply.models import TicketStatus
from autoreply.store import Rating
from autoreply.web.errors import ERROR_RESPONSES, Unauthorized
from autoreply.web.state import ServiceState, StateDep

router = APIRouter(prefix="/v1", tags=["customer"])


@router.post(
    "/csat",
    response_model=Rating,
    status_code=status.HTTP_201_CREATED,
    responses={k: ERROR_RESPONSES[k] for k in (401, 404, 409, 422)},
    summary="Rate a resolved ticket, 1-5",
)
async def rate(
    body: RatingIn, state: StateDep, signed: SignedDep, token: TokenDep = None
) -> Rating:
    """The conversation's customer rates its last resolved ticket (or ``ticket_id``, which
    must be one of the conversation's). Needs the conversation's ``X-Conversation-Token``
    or a signed request."""
    if not token and not signed:
        raise Unauthorized(f"rating needs the conversation's {TOKEN_HEADER} or a signed request")
    return await asyncio.to_thread(_rate, state, body, signed=signed, token=token)


def _rate(state: ServiceState, body: RatingIn, *, signed: bool, token: str | None) -> Rating:
    conversation = body.conversation_id
    if signed:
        allowed = conversation.startswith(f"{API_CHANNEL}:")
    else:
        allowed = token_opens(state, conversation, token)
    if not allowed:
        raise not_found(conversation)
    store = state.bot.store
    tickets = store.tickets_for_conversations([conversation])
    if body.ticket_id is not None:
        tickets = [t for t in tickets if t.id == body.ticket_id]
        if not tickets:
            raise NotFoundError(f"no ticket {body.ticket_id} in conversation '{conversation}'")
    resolved = [t for t in tickets if t.status is TicketStatus.RESOLVED]
    if not resolved:
        raise ConflictError(
            f"conversation '{conversation}' has no resolved ticket to rate; rate once an "
            "agent has resolved it"
        )
    return store.add_rating(resolved[-1].id, rating=body.rating, comment=body.comment)
