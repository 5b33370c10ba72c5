"""Text <-> token ids: a thin layer over Hugging Face ``tokenizers`` with two trainers.

* ``train_bpe``: byte-level BPE (GPT-2 style). Every UTF-8 string maps to bytes first, so nothing is ever
  unknown and decoding is lossless for any text: Chinese, emoji, control characters.
* ``train_char``: one token per character seen in training (sorted, as in nanoGPT's shakespeare_char), plus
  256 ``<0xNN>`` byte tokens so an unseen character still round-trips as its UTF-8 bytes.

Special tokens always come first, in a fixed order, so their ids are the same in every tokenizer we train.
``save`` writes ``tokenizer.json`` + ``tokenizer_config.json``, which ``transformers.AutoTokenizer`` loads
as is; ``load`` also reads the files that transformers writes for real GPT-2 / Llama / Qwen2 checkpoints.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Iterator, Sequence

import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

from lmstack.text.chat_template import DEFAULT_CHAT_TEMPLATE, render
from lmstack.errors import LmstackError
from lmstack.io import atomic_path, read_json, write_json

PAD, BOS, EOS, IM_START, IM_END = "<|pad|>", "<|bos|>", "<|eos|>", "<|im_start|>", "<|im_end|>"
MASK = "<|mask|>"  # masked-language-model pretraining of encoders (BERT's [MASK])
SPECIAL_TOKENS = [PAD, BOS, EOS, IM_START, IM_END, MASK] + [f"<|reserved_{i}|>" for i in range(2)]
NO_MAX_LENGTH = int(1e30)  # what transformers writes for "no length limit"
# Denoising objectives (``lmstack prepare --sentinels N``): T5's sentinels, BART's infilling mask, UL2's mode tokens
INFILL_MASK, MODE_TOKENS = "<mask>", ("[R]", "[S]", "[X]")


def sentinel(i: int) -> str:
    """T5's name of sentinel ``i``: ``<extra_id_i>``."""
    return f"<extra_id_{i}>"


class Tokenizer:
    """Encode and decode text; ``bos_id``/``eos_id``/``pad_id`` are None when the tokenizer has no such token."""

    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        bos_token: str | None = BOS,
        eos_token: str | None = EOS,
        pad_token: str | None = PAD,
        model_max_length: int = NO_MAX_LENGTH,
        chat_template: str | None = None,
    ):
        # A tokenizer.json written by transformers may pad and truncate every encoding (all-MiniLM-L6-v2's pads to
        # 128): lmstack frames, cuts and pads sequences itself, so encodings here are always the text's tokens only.
        if backend.padding:
            backend.no_padding()
        if backend.truncation:
            backend.no_truncation()
        self.backend = backend
        self.bos_token, self.eos_token, self.pad_token = bos_token, eos_token, pad_token
        self.bos_id, self.eos_id, self.pad_id = (self._special_id(t) for t in (bos_token, eos_token, pad_token))
        self.model_max_length = model_max_length
        self.chat_template = chat_template

    def _special_id(self, token: str | None) -> int | None:
        if token is None:
            return None
        i = self.backend.token_to_id(token)
        if i is None:
            raise LmstackError(f"special token {token!r} is not in the tokenizer's vocabulary")
        return i

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    @property
    def sha256(self) -> str:
        """Hash of the canonical (compact) tokenizer.json: equal hashes mean identical text -> ids mappings."""
        return hashlib.sha256(self.backend.to_str().encode("utf-8")).hexdigest()

    @property
    def sentinel_ids(self) -> list[int]:
        """Ids of ``<extra_id_0>``, ``<extra_id_1>``, ... (T5's sentinels; [] without them): ``add_sentinels``
        puts them last, ``<extra_id_0>`` the highest id, as Hugging Face's T5 tokenizers do."""
        ids, i = [], 0
        while (j := self.backend.token_to_id(sentinel(i))) is not None:
            ids.append(j)
            i += 1
        return ids

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, i: int) -> str | None:
        return self.backend.id_to_token(i)

    def encode(self, text: str, bos: bool = False, eos: bool = False, specials: bool = True) -> list[int]:
        """Text to ids, optionally framed by bos/eos.

        A special token's string in ``text`` (say "<|im_end|>") becomes that token; with ``specials=False``
        it is encoded as plain text instead, so untrusted text cannot forge a document or turn boundary.
        """
        with self._specials(specials):
            return self._wrap(self.backend.encode(text, add_special_tokens=False).ids, bos, eos)

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids of ``text`` (special tokens recognised) and each token's (start, end) character span in it."""
        with self._specials(True):
            encoding = self.backend.encode(text, add_special_tokens=False)
        return encoding.ids, encoding.offsets

    def encode_batch(self, texts: Sequence[str], bos: bool = False, eos: bool = False,
                     specials: bool = True) -> list[list[int]]:
        """Encode many texts at once, in parallel on all cores (the fast path for data preparation)."""
        with self._specials(specials):
            encodings = self.backend.encode_batch_fast(list(texts), add_special_tokens=False)
        return [self._wrap(e.ids, bos, eos) for e in encodings]

    @contextlib.contextmanager
    def _specials(self, recognise: bool) -> Iterator[None]:
        before = self.backend.encode_special_tokens
        self.backend.encode_special_tokens = not recognise
        try:
            yield
        finally:
            self.backend.encode_special_tokens = before

    def _wrap(self, ids: list[int], bos: bool, eos: bool) -> list[int]:
        if bos:
            ids = [self._require(self.bos_id, "bos")] + ids
        if eos:
            ids = ids + [self._require(self.eos_id, "eos")]
        return ids

    @staticmethod
    def _require(i: int | None, name: str) -> int:
        if i is None:
            raise LmstackError(f"this tokenizer has no {name} token")
        return i

    def apply_chat_template(self, messages: list[dict], tools: list[dict] | None = None,
                            add_generation_prompt: bool = False) -> str:
        """The conversation as text, rendered as ``transformers``' ``apply_chat_template(tokenize=False)`` does."""
        return render(messages, self.template(), tools, add_generation_prompt, **self.template_variables())

    def template(self) -> str:
        """The chat template; a tokenizer with ChatML markers but no template falls back to lmstack's ChatML."""
        if self.chat_template is not None:
            return self.chat_template
        if self.token_to_id(IM_START) is None or self.token_to_id(IM_END) is None:
            raise LmstackError("this tokenizer has no chat template and no <|im_start|>/<|im_end|> tokens to fall "
                               "back on; add chat_template to its tokenizer_config.json")
        return DEFAULT_CHAT_TEMPLATE

    def template_variables(self) -> dict[str, str | None]:
        """The special tokens ``apply_chat_template`` passes to every template."""
        return {"bos_token": self.bos_token, "eos_token": self.eos_token, "pad_token": self.pad_token}

    def decode(self, ids: Iterable[int]) -> str:
        """Ids back to text, special tokens included (so decode(encode(s)) == s for every string)."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)  # numpy arrays and tensors too
        return self.backend.decode(ids, skip_special_tokens=False)

    def config(self) -> dict[str, Any]:
        """tokenizer_config.json, in the form transformers reads."""
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "pad_token": self.pad_token,
            "model_max_length": self.model_max_length,
            "clean_up_tokenization_spaces": False,
        }
        if self.chat_template is not None:
            config["chat_template"] = self.chat_template
        return config

    def save(self, directory: str | Path) -> Path:
        """Write tokenizer.json and tokenizer_config.json into ``directory``; return its path."""
        directory = Path(directory)
        with atomic_path(directory / "tokenizer.json") as tmp:
            self.backend.save(str(tmp))
        write_json(directory / "tokenizer_config.json", self.config())
        return directory

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Load a folder holding tokenizer.json (ours, or one transformers saved), or a tokenizer.json file.

        Special tokens and the chat template come from tokenizer_config.json / special_tokens_map.json /
        chat_template.jinja beside it when present; with neither file, our default special tokens are used.
        """
        path = Path(path)
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise LmstackError(f"{file}: tokenizer file not found (expected a tokenizer.json or a folder holding one)")
        try:
            backend = tokenizers.Tokenizer.from_file(str(file))
        except Exception as e:  # the Rust side raises a bare Exception with a serde message
            raise LmstackError(f"{file}: not a valid tokenizer.json ({str(e).splitlines()[0]})") from e
        config: dict[str, Any] = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):
            if (file.parent / name).is_file():
                config |= read_json(file.parent / name)
        template = file.parent / "chat_template.jinja"
        if "chat_template" not in config and template.is_file():
            config["chat_template"] = template.read_text(encoding="utf-8")
        if not config:
            config = {k: t if backend.token_to_id(t) is not None else None
                      for k, t in (("bos_token", BOS), ("eos_token", EOS), ("pad_token", PAD))}
        return cls(
            backend,
            bos_token=_content(config.get("bos_token")),
            eos_token=_content(config.get("eos_token")),
            pad_token=_content(config.get("pad_token")),
            model_max_length=int(config.get("model_max_length") or NO_MAX_LENGTH),
            chat_template=config.get("chat_template"),
        )


def add_sentinels(tokenizer: Tokenizer, n: int) -> Tokenizer:
    """``tokenizer`` with the denoising special tokens added at the end of its vocabulary: ``<mask>`` (BART's
    infilling), ``[R]``, ``[S]``, ``[X]`` (UL2's modes), then ``<extra_id_{n-1}>`` .. ``<extra_id_0>`` (so
    ``<extra_id_0>`` has the highest id, as in T5). Tokens it already has keep their ids; n = 0 changes nothing."""
    if n < 0:
        raise LmstackError(f"--sentinels must be 0 or more, got {n}")
    if n == 0:
        return tokenizer
    backend = tokenizers.Tokenizer.from_str(tokenizer.backend.to_str())
    backend.add_special_tokens([INFILL_MASK, *MODE_TOKENS] + [sentinel(i) for i in reversed(range(n))])
    return Tokenizer(backend, tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token,
                     tokenizer.model_max_length, tokenizer.chat_template)


def _content(token: str | dict | None) -> str | None:
    """transformers writes a special token either as a string or as an AddedToken dict with "content"."""
    return token.get("content") if isinstance(token, dict) else token


def _specials(special_tokens: Sequence[str]) -> dict[str, str | None]:
    """Our special tokens that ``special_tokens`` holds, and the ChatML template where it has the turn markers."""
    found: dict[str, str | None] = {k: t if t in special_tokens else None
                                    for k, t in (("bos_token", BOS), ("eos_token", EOS), ("pad_token", PAD))}
    chatml = IM_START in special_tokens and IM_END in special_tokens
    return {**found, "chat_template": DEFAULT_CHAT_TEMPLATE if chatml else None}


def train_bpe(
    texts: Iterable[str],
    vocab_size: int,
    min_frequency: int = 2,
    special_tokens: Sequence[str] = SPECIAL_TOKENS,
    show_progress: bool = False,
    split_digits: bool = False,
) -> Tokenizer:
    """Train byte-level BPE on ``texts`` (any iterable, consumed once, so a large corpus streams).

    The vocabulary is the special tokens, then the 256 byte symbols, then the learned merges, up to
    ``vocab_size`` in all (fewer if the text runs out of pairs seen ``min_frequency`` times). With
    ``split_digits`` every digit is a token of its own (as in LLaMA, Touvron et al. 2023, and Qwen): numbers then
    read digit by digit, which arithmetic needs, instead of as whichever chunks BPE happened to merge.
    """
    smallest = len(special_tokens) + 256
    if vocab_size < smallest:
        raise LmstackError(f"vocab size {vocab_size} is too small for byte-level BPE: it needs at least {smallest} "
                           f"(256 bytes + {len(special_tokens)} special tokens)")
    backend = tokenizers.Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                             if split_digits else byte_level)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return Tokenizer(backend, **_specials(special_tokens))


def train_char(
    texts: Iterable[str],
    special_tokens: Sequence[str] = SPECIAL_TOKENS,
    byte_fallback: bool = True,
) -> Tokenizer:
    """A character-level tokenizer: special tokens, then (with ``byte_fallback``) ``<0x00>``..``<0xFF>``,
    then every character in ``texts``, sorted.

    ``train_char(texts, special_tokens=(), byte_fallback=False)`` gives exactly nanoGPT's shakespeare_char
    vocabulary (65 tokens, same ids); without byte fallback, characters not seen in training are dropped.
    """
    chars: set[str] = set()
    for text in texts:
        chars.update(text)
    vocab = list(special_tokens) + ([f"<0x{b:02X}>" for b in range(256)] if byte_fallback else []) + sorted(chars)
    if not vocab:
        raise LmstackError("cannot build a character tokenizer from no text and no special tokens")
    backend = tokenizers.Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(vocab)}, merges=[],
                                              byte_fallback=byte_fallback))
    backend.add_special_tokens(list(special_tokens))
    backend.decoder = (decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()]) if byte_fallback
                       else decoders.Fuse())
    return Tokenizer(backend, **_specials(special_tokens))
