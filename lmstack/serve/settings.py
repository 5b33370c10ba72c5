"""What an operator configures about a server."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Settings:
    """The defaults suit a laptop and a public-facing box alike."""
    model_name: str
    api_key: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    max_tokens: int | None = None  # cap on max_tokens per request (None: the context)
    max_body: int = 1_000_000  # bytes
    retry_after: int = 1  # seconds, sent with 429
    strict: bool = False  # refuse request fields outside OpenAI's schema (else: ignored with a logged warning)
    end_ids: list[int] = field(default_factory=list)  # generation_config.json's eos ids: completions stop there too
