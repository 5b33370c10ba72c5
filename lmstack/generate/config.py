"""``GenerationConfig``: every decoding knob, with the meaning (and defaults) ``transformers`` gives it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from lmstack.errors import LmstackError


@dataclass
class GenerationConfig:
    max_new_tokens: int = 64
    min_new_tokens: int = 0  # eos is forbidden until this many tokens are made
    do_sample: bool = False  # False: greedy (num_beams=1) or beam search
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1.0: off
    repetition_penalty: float = 1.0  # 1.0: off
    num_beams: int = 1
    length_penalty: float = 1.0  # beam score = sum of log-probs / generated_length ** length_penalty
    early_stopping: bool | Literal["never"] = False  # beam search's stopping rule, as in transformers
    stop: list[str] = field(default_factory=list)  # stop when the continuation contains one; it is trimmed
    seed: int | None = None  # sampling: the same seed gives the same text; None: a fresh random seed
    compile: bool = False  # torch.compile the one-token decode step (greedy/sampling; pays off on long outputs)

    def __post_init__(self) -> None:
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
        sampling = {"temperature": self.temperature != 1.0, "top_k": self.top_k > 0, "top_p": self.top_p < 1.0}
        if not self.do_sample and any(sampling.values()):
            name = next(k for k, v in sampling.items() if v)
            raise LmstackError(f"{name} only applies when sampling; turn on do_sample")
        if self.do_sample and self.num_beams > 1:
            raise LmstackError("beam search is deterministic here; use num_beams=1 with do_sample")
        if self.early_stopping not in (True, False, "never"):
            raise LmstackError(f"early_stopping must be true, false or 'never', got {self.early_stopping!r}")
