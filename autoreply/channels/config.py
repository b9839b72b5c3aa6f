"""Channel secrets and endpoints, read through Settings (env: AUTOREPLY_CHANNELS__SLACK__...).

A channel whose required secret is empty is not mounted: a request to it gets 404.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class SlackConfig(BaseModel):
    signing_secret: str = ""
    bot_token: str = ""
    api_base: str = "https://slack.com/api"
    max_skew_seconds: int = 300


class TelegramConfig(BaseModel):
    secret_token: str = ""
    bot_token: str = ""
    api_base: str = "https://api.telegram.org"


class WeComConfig(BaseModel):
    token: str = ""
    encoding_aes_key: str = ""
    corp_id: str = ""
    corp_secret: str = ""
    agent_id: str = ""
    api_base: str = "https://qyapi.weixin.qq.com/cgi-bin"
    max_skew_seconds: int = 300
    """A signed callback whose ``timestamp`` is further from now is refused (a replay)."""


class DingTalkConfig(BaseModel):
    app_secret: str = ""
    api_base: str = "https://oapi.dingtalk.com"
    max_skew_seconds: int = 3600


class FeishuConfig(BaseModel):
    verification_token: str = ""
    encrypt_key: str = ""
    app_id: str = ""
    app_secret: str = ""
    api_base: str = "https://open.feishu.cn/open-apis"
    max_skew_seconds: int = 300
    """A signed event whose ``X-Lark-Request-Timestamp`` is further from now is refused."""


class ChatwootConfig(BaseModel):
    base_url: str = ""
    api_token: str = ""
    webhook_token: str = ""
    """Shared secret expected in the webhook URL's ``?token=`` (Chatwoot bots do not sign)."""


class GenericConfig(BaseModel):
    callback_url: str = ""
    """Where agent replies for the generic channel are POSTed (empty: poll the conversation)."""
    callback_secret: str = ""
    """HMAC-SHA256 key for the ``X-Autoreply-Signature`` header on callbacks."""
    webhook_secret: str = ""
    """HMAC-SHA256 key that signs requests to ``POST /v1/messages``. Once set, every request
    must carry ``X-Autoreply-Timestamp`` and ``X-Autoreply-Signature`` (401 otherwise), and
    only signed requests may set VIP, priority and identity metadata."""
    max_skew_seconds: int = 300
    """A signed webhook request whose timestamp is further from now is refused (a replay)."""


class ChannelsConfig(BaseModel):
    generic: GenericConfig = Field(default_factory=GenericConfig)
    slack: SlackConfig = Field(default_factory=SlackConfig)
    telegram: TelegramConfig = Field(default_factory=TelegramConfig)
    wecom: WeComConfig = Field(default_factory=WeComConfig)
    dingtalk: DingTalkConfig = Field(default_factory=DingTalkConfig)
    feishu: FeishuConfig = Field(default_factory=FeishuConfig)
    chatwoot: ChatwootConfig = Field(default_factory=ChatwootConfig)
    timeout_seconds: float = 10.0
    """Timeout of each outbound platform API request."""
    retries: int = 3
    """Extra attempts after a 5xx, 429, timeout or network error (a 4xx is never retried)."""
    backoff_seconds: float = 0.5
    """Wait before the first retry; doubles on each further retry (a Retry-After wins)."""
