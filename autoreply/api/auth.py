"""Bearer-token authentication for the agent and admin API.

Tokens come from ``autoreply agents add NAME --role agent|admin`` (printed once, stored as
sha256 only). Missing, unknown, expired or disabled tokens get 401 saying which; an agent
token on an admin route gets 403. Each agent is also rate limited like a customer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from autoreply.store import Agent, AgentRole
from autoreply.web.errors import Forbidden, Unauthorized
from autoreply.web.state import ServiceState, StateDep

_bearer = HTTPBearer(
    auto_error=False,
    description="An agent token from `autoreply agents add NAME --role agent|admin`.",
)


BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def current_agent(state: StateDep, credentials: BearerDep) -> Agent:
    """The agent whose bearer token came with the request, or 401 saying what is wrong."""
    if credentials is None or not credentials.credentials:
        raise Unauthorized(
            "missing bearer token: send 'Authorization: Bearer <token>' "
            "(an admin creates tokens with `autoreply agents add NAME`)"
        )
    return agent_for(state, credentials.credentials)


def agent_for(state: ServiceState, token: str) -> Agent:
    """The agent a bearer token belongs to, or 401 saying what is wrong with it."""
    agent = state.bot.store.agent_for_token(token)
    if agent is None:
        raise Unauthorized("unknown token: check it was copied whole, or ask an admin for one")
    if agent.disabled:
        raise Unauthorized(
            f"agent '{agent.name}' is disabled; ask an admin for a new token "
            f"(autoreply agents token {agent.name})"
        )
    if agent.expired(datetime.now(UTC)):
        assert agent.expires_at is not None
        raise Unauthorized(
            f"the token of agent '{agent.name}' expired at {agent.expires_at:%Y-%m-%d %H:%M} "
            f"UTC; ask an admin for a new one (autoreply agents token {agent.name})"
        )
    state.check_user(f"agent:{agent.name}")
    return agent


def admin_agent(agent: Annotated[Agent, Depends(current_agent)]) -> Agent:
    """The current agent if it is an admin, else 403."""
    if agent.role is not AgentRole.ADMIN:
        raise Forbidden(
            f"agent '{agent.name}' has role '{agent.role.value}'; this route needs an admin "
            "token (autoreply agents add NAME --role admin)"
        )
    return agent


AgentDep = Annotated[Agent, Depends(current_agent)]
AdminDep = Annotated[Agent, Depends(admin_agent)]
