"""Chat channel adapters: verify and parse a platform's inbound request, answer it, send replies.

One module per platform (``slack``, ``telegram``, ``wecom``, ``dingtalk``, ``feishu``,
``chatwoot``, ``generic``), each a ``Channel`` (``base``); ``registry.build_channels`` builds the
enabled ones. ``config`` holds their settings and is imported by ``autoreply.settings``, so this
package loads its names lazily (PEP 562): reading settings does not import FastAPI or
``cryptography``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "CHANNELS": "autoreply.channels.registry",
    "Channel": "autoreply.channels.base",
    "ChannelError": "autoreply.channels.base",
    "ChannelsConfig": "autoreply.channels.config",
    "ChatwootChannel": "autoreply.channels.chatwoot",
    "DingTalkChannel": "autoreply.channels.dingtalk",
    "FeishuChannel": "autoreply.channels.feishu",
    "GenericChannel": "autoreply.channels.generic",
    "Handler": "autoreply.channels.base",
    "SlackChannel": "autoreply.channels.slack",
    "TelegramChannel": "autoreply.channels.telegram",
    "WeComChannel": "autoreply.channels.wecom",
    "WeComCrypto": "autoreply.channels.wecom_crypto",
    "build_channels": "autoreply.channels.registry",
    "channel_for": "autoreply.channels.registry",
    "verify_callback_signature": "autoreply.channels.generic",
}

__all__ = [
    "CHANNELS",
    "Channel",
    "ChannelError",
    "ChannelsConfig",
    "ChatwootChannel",
    "DingTalkChannel",
    "FeishuChannel",
    "GenericChannel",
    "Handler",
    "SlackChannel",
    "TelegramChannel",
    "WeComChannel",
    "WeComCrypto",
    "build_channels",
    "channel_for",
    "verify_callback_signature",
]

if TYPE_CHECKING:
    from autoreply.channels.base import Channel, ChannelError, Handler
    from autoreply.channels.chatwoot import ChatwootChannel
    from autoreply.channels.config import ChannelsConfig
    from autoreply.channels.dingtalk import DingTalkChannel
    from autoreply.channels.feishu import FeishuChannel
    from autoreply.channels.generic import GenericChannel, verify_callback_signature
    from autoreply.channels.registry import CHANNELS, build_channels, channel_for
    from autoreply.channels.slack import SlackChannel
    from autoreply.channels.telegram import TelegramChannel
    from autoreply.channels.wecom import WeComChannel
    from autoreply.channels.wecom_crypto import WeComCrypto


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'autoreply.channels' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
