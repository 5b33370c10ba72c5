"""``GenerationConfig``: every decoding knob, with the meaning (and defaults) ``transformers`` gives it, plus
OpenAI's ``frequency_penalty``, ``presence_penalty`` and ``logit_bias``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from lmstack.errors import LmstackError

INT64 = (-2**63, 2**63 - 1)  # the seed range OpenAI's API (an int64) and torch's generators share


@dataclass
class GenerationConfig:
    max_new_tokens: int = 64
    min_new_tokens: int = 0  # eos is forbidden until this many tokens are made
    do_sample: bool = False  # False: greedy (num_beams=1) or beam search
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1.0: off
    repetition_penalty: float = 1.0  # 1.0: off
    frequency_penalty: float = 0.0  # OpenAI's: logit -= f * (times the token was generated so far); in [-2, 2]
    presence_penalty: float = 0.0  # OpenAI's: logit -= p if the token was generated so far; in [-2, 2]
    logit_bias: dict[int, float] = field(default_factory=dict)  # token id -> added to its logit, in [-100, 100]
    num_beams: int = 1
    length_penalty: float = 1.0  # beam score = sum of log-probs / generated_length ** length_penalty
    early_stopping: bool | Literal["never"] = False  # beam search's stopping rule, as in transformers
    stop: list[str] = field(default_factory=list)  # stop when the continuation contains one; it is trimmed
    seed: int | None = None  # sampling: the same seed gives the same text; None: a fresh random seed
    compile: bool = False  # torch.compile the one-token decode step (greedy/sampling; pays off on long outputs)

    def __post_init__(self) -> None:
        for name in ("temperature", "top_p", "repetition_penalty", "frequency_penalty", "presence_penalty",
                     "length_penalty"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise LmstackError(f"{name} must be a finite number, got {value!r}")
        if self.max_new_tokens < 1:
            raise LmstackError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise LmstackError(f"min_new_tokens must be in [0, max_new_tokens={self.max_new_tokens}], "
                               f"got {self.min_new_tokens}")
        if self.temperature <= 0:
            raise LmstackError(f"temperature must be positive, got {self.temperature} (for greedy decoding leave "
                               "do_sample off)")
        if self.top_k < 0 or not 0 < self.top_p <= 1 or self.repetition_penalty <= 0 or self.num_beams < 1:
            raise LmstackError("need top_k >= 0, 0 < top_p <= 1, repetition_penalty > 0 and num_beams >= 1; got "
                               f"{self.top_k}, {self.top_p}, {self.repetition_penalty}, {self.num_beams}")
        for name in ("frequency_penalty", "presence_penalty"):
            if not -2 <= getattr(self, name) <= 2:
                raise LmstackError(f"{name} must be in [-2, 2], got {getattr(self, name)}")
        for token, bias in self.logit_bias.items():
            if isinstance(token, bool) or not isinstance(token, int) or token < 0:
                raise LmstackError(f"logit_bias: keys must be token ids (integers >= 0), got {token!r}")
            if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not -100 <= bias <= 100:
                raise LmstackError(f"logit_bias[{token}] must be a number in [-100, 100], got {bias!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)
                                      or not INT64[0] <= self.seed <= INT64[1]):
            raise LmstackError(f"seed must be an integer in [-2**63, 2**63 - 1], got {self.seed!r}")
        sampling = {"temperature": self.temperature != 1.0, "top_k": self.top_k > 0, "top_p": self.top_p < 1.0}
        if not self.do_sample and any(sampling.values()):
            name = next(k for k, v in sampling.items() if v)
            raise LmstackError(f"{name} only applies when sampling; turn on do_sample")
        if self.do_sample and self.num_beams > 1:
            raise LmstackError("beam search is deterministic here; use num_beams=1 with do_sample")
        if self.early_stopping not in (True, False, "never"):
            raise LmstackError(f"early_stopping must be true, false or 'never', got {self.early_stopping!r}")
