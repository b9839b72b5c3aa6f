"""Which channels exist, and building the enabled ones for the server.

The server mounts ``channel.router(handle)`` under ``/channels/{name}`` for every channel
``build_channels`` returns, and delivers an agent's reply with
``channel_for(channels, ticket.channel).send(...)``.
"""

from __future__ import annotations

import httpx

from autoreply.channels.base import Channel
from autoreply.channels.chatwoot import ChatwootChannel
from autoreply.channels.config import ChannelsConfig
from autoreply.channels.dingtalk import DingTalkChannel
from autoreply.channels.feishu import FeishuChannel
from autoreply.channels.generic import GenericChannel
from autoreply.channels.slack import SlackChannel
from autoreply.channels.telegram import TelegramChannel
from autoreply.channels.wecom import WeComChannel

CHANNELS: tuple[type[Channel], ...] = (
    GenericChannel,
    SlackChannel,
    TelegramChannel,
    WeComChannel,
    DingTalkChannel,
    FeishuChannel,
    ChatwootChannel,
)
"""Every adapter, by name: generic, slack, telegram, wecom, dingtalk, feishu, chatwoot."""


def build_channels(config: ChannelsConfig, http: httpx.AsyncClient) -> dict[str, Channel]:
    """The channels whose secrets are set, by name; ``"generic"`` is always there.

    Raises ``ChannelError`` when a set secret cannot be used (e.g. a WeCom EncodingAESKey that
    is not 43 characters), so a bad configuration fails at startup, not on the first message.
    """
    return {cls.name: cls(config, http) for cls in CHANNELS if cls.enabled(config)}


def channel_for(channels: dict[str, Channel], name: str) -> Channel:
    """The channel that delivers replies for conversations from ``name``.

    Messages that came through ``/v1/messages`` (channel ``"api"`` or any name without an
    enabled adapter) are the generic channel's: their replies go to its callback URL.
    """
    return channels.get(name) or channels["generic"]
