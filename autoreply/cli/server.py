"""Command-line commands for the service: ``autoreply serve``, ``autoreply agents ...`` and
``autoreply vip ...``.

``register(app)`` adds them to the main typer app (``autoreply.cli``). Heavy modules (FastAPI,
uvicorn, the encoder) are imported inside the commands so ``autoreply --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table

from autoreply.cli.common import DbOpt, JsonOpt, KnowledgeOpt, err, load_settings, open_store, out

agents_app = typer.Typer(help="API tokens for agents and admins: add, list, disable, renew.")
vip_app = typer.Typer(
    help="The VIP list: customers whose escalations get priority and their own agent."
)

ExpiresOpt = Annotated[
    int | None,
    typer.Option("--expires-days", min=1, help="The token stops working after N days."),
]


def register(app: typer.Typer) -> None:
    """Add ``serve`` and the ``agents`` group to the main command-line app."""
    app.command()(serve)
    app.add_typer(agents_app, name="agents")
    app.add_typer(vip_app, name="vip")


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    knowledge: KnowledgeOpt = None,
    db: DbOpt = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the HTTP service (customer webhook, agent API, admin, /metrics) with uvicorn.

    Settings come from AUTOREPLY_* environment variables and autoreply.toml; the options
    here override them. Use --host 0.0.0.0 to listen on every interface.

    Example:  autoreply serve --port 8000 --knowledge knowledge/ --db autoreply.db
    """
    import uvicorn

    from autoreply.app import create_app

    app = create_app(load_settings(knowledge, db))
    # The app logs one JSON line per request (with its request id): no uvicorn access log.
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


def _expiry(days: int | None) -> datetime | None:
    return None if days is None else datetime.now(UTC) + timedelta(days=days)


def _show_token(name: str, token: str, expires_at: datetime | None) -> None:
    until = f", valid until {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else ""
    err.print(
        f"token for [bold]{name}[/]{until}. Copy it now: it is stored hashed and is "
        "not shown again. Send it as 'Authorization: Bearer <token>'.",
        highlight=False,
    )
    sys.stdout.write(token + "\n")


@agents_app.command("add")
def agents_add(
    name: Annotated[str, typer.Argument(help="Agent name (letters, digits, . _ @ -).")],
    role: Annotated[
        str, typer.Option(help="agent (work the queue) or admin (also manage).")
    ] = "agent",
    expires_days: ExpiresOpt = None,
    db: DbOpt = None,
) -> None:
    """Create an agent and print its API token once.

    Example:  autoreply agents add alice --role agent --expires-days 90
    """
    from autoreply.store import AgentRole, new_token

    try:
        agent_role = AgentRole(role)
    except ValueError:
        known = ", ".join(r.value for r in AgentRole)
        raise typer.BadParameter(f"'{role}' is not one of: {known}", param_hint="--role") from None
    token = new_token()
    store = open_store(db)
    try:
        agent = store.add_agent(
            name, role=agent_role, token=token, expires_at=_expiry(expires_days)
        )
    finally:
        store.close()
    _show_token(agent.name, token, agent.expires_at)


@agents_app.command("token")
def agents_token(
    name: Annotated[str, typer.Argument(help="Agent name.")],
    expires_days: ExpiresOpt = None,
    db: DbOpt = None,
) -> None:
    """Issue a new token for an agent (the old one stops working; a disabled agent is
    enabled again) and print it once.

    Example:  autoreply agents token alice --expires-days 30
    """
    from autoreply.store import new_token

    token = new_token()
    store = open_store(db)
    try:
        agent = store.set_agent_token(name, token=token, expires_at=_expiry(expires_days))
    finally:
        store.close()
    _show_token(agent.name, token, agent.expires_at)


@agents_app.command("list")
def agents_list(
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List agents with role, expiry and state (never their tokens).

    Example:  autoreply agents list
    """
    store = open_store(db)
    try:
        agents = store.list_agents()
    finally:
        store.close()
    if as_json:
        rows = [a.model_dump(mode="json") for a in agents]
        sys.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
        return
    now = datetime.now(UTC)
    table = Table("name", "role", "created", "expires", "state", title="agents")
    for a in agents:
        state = "disabled" if a.disabled else "expired" if a.expired(now) else "active"
        table.add_row(
            a.name,
            a.role.value,
            f"{a.created_at:%Y-%m-%d}",
            f"{a.expires_at:%Y-%m-%d %H:%M}" if a.expires_at else "never",
            state,
        )
    out.print(table)


@agents_app.command("disable")
def agents_disable(
    name: Annotated[str, typer.Argument(help="Agent name.")], db: DbOpt = None
) -> None:
    """Stop an agent's token from working (its tickets stay as they are).

    Example:  autoreply agents disable alice
    """
    store = open_store(db)
    try:
        store.disable_agent(name)
    finally:
        store.close()
    out.print(f"agent {name} disabled; `autoreply agents token {name}` enables it again")


ChannelArg = Annotated[
    str,
    typer.Argument(help="The channel that proves the customer's id: telegram, slack, api, ..."),
]
UserArg = Annotated[str, typer.Argument(help="The customer's user id on that channel.")]


@vip_app.command("add")
def vip_add(
    channel: ChannelArg,
    user_id: UserArg,
    note: Annotated[str | None, typer.Option("--note", help="Why, for the agents.")] = None,
    by: Annotated[str, typer.Option("--by", help="Who adds them (kept with the entry).")] = "cli",
    db: DbOpt = None,
) -> None:
    """Put a customer on the VIP list. It counts for messages whose sender the channel
    proves (a signed platform request, or a signed generic webhook), never for anonymous
    POST /v1/messages requests.

    Example:  autoreply vip add telegram 123456789 --note "key account"
    """
    store = open_store(db)
    try:
        vip = store.add_vip(channel, user_id, added_by=by, note=note)
    finally:
        store.close()
    out.print(f"{vip.user_id} on {vip.channel} is a VIP", markup=False, highlight=False)


@vip_app.command("remove")
def vip_remove(channel: ChannelArg, user_id: UserArg, db: DbOpt = None) -> None:
    """Take a customer off the VIP list.

    Example:  autoreply vip remove telegram 123456789
    """
    from autoreply.errors import NotFoundError

    store = open_store(db)
    try:
        store.remove_vip(channel, user_id)
    except NotFoundError as exc:
        err.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(1) from None
    finally:
        store.close()
    out.print(f"{user_id} on {channel} is no longer a VIP", markup=False, highlight=False)


@vip_app.command("list")
def vip_list(
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the VIP customers with who added them and when.

    Example:  autoreply vip list
    """
    store = open_store(db)
    try:
        vips = store.list_vips()
    finally:
        store.close()
    if as_json:
        rows = [v.model_dump(mode="json") for v in vips]
        sys.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
        return
    table = Table("channel", "user id", "note", "added by", "added", title="VIP customers")
    for v in vips:
        table.add_row(v.channel, v.user_id, v.note or "", v.added_by, f"{v.added_at:%Y-%m-%d}")
    out.print(table)
