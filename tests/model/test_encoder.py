"""The BERT encoder: bidirectional, padding-invariant, pooled and framed as transformers' BERT does."""

from __future__ import annotations

import pytest
import torch
import transformers
from tokenizers import Tokenizer as Backend
from tokenizers import models, normalizers, pre_tokenizers

from lmstack.text.tokenizer import Tokenizer, train_char
from lmstack.errors import LmstackError
from lmstack.model import preset
from lmstack.model.encoder_text import encode_pairs, specials
from lmstack.model.families.bert import build_encoder
from lmstack.model.heads import (EncoderForMaskedLM, EncoderForMultipleChoice, EncoderForQuestionAnswering,
                                 EncoderForSequenceClassification, pool)

CONFIG = preset("bert-tiny", vocab_size=60, n_embd=32, n_head=4, block_size=32)


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    return build_encoder(CONFIG).eval()


def test_attention_is_bidirectional(encoder):
    x = torch.randint(0, 60, (1, 10))
    y = x.clone()
    y[0, -1] = (x[0, -1] + 1) % 60
    with torch.no_grad():
        a, b = encoder(x), encoder(y)
    assert not torch.allclose(a[0, 0], b[0, 0])  # the first position sees the last


def test_padding_changes_nothing_for_real_tokens(encoder):
    x = torch.randint(0, 60, (1, 7))
    padded = torch.cat([x, torch.randint(0, 60, (1, 5))], dim=1)
    mask = torch.tensor([[1] * 7 + [0] * 5])
    with torch.no_grad():
        torch.testing.assert_close(encoder(padded, mask)[:, :7], encoder(x), atol=1e-5, rtol=0)


def test_token_types_matter(encoder):
    x = torch.randint(0, 60, (1, 6))
    with torch.no_grad():
        assert not torch.allclose(encoder(x), encoder(x, token_type_ids=torch.ones_like(x)))
        torch.testing.assert_close(encoder(x), encoder(x, token_type_ids=torch.zeros_like(x)))


def test_pool():
    h = torch.arange(24, dtype=torch.float32).view(2, 3, 4)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    torch.testing.assert_close(pool(h, mask, "cls"), h[:, 0])
    torch.testing.assert_close(pool(h, mask, "mean")[0], h[0, :2].mean(0))
    torch.testing.assert_close(pool(h, mask, "mean")[1], h[1].mean(0))
    with pytest.raises(ValueError):
        pool(h, mask, "max")


def test_head_shapes(encoder):
    x = torch.randint(0, 60, (2, 9))
    assert EncoderForMaskedLM(encoder)(x).shape == (2, 9, 60)
    start, end = EncoderForQuestionAnswering(encoder)(x)
    assert start.shape == end.shape == (2, 9)
    assert EncoderForSequenceClassification(encoder, 3)(x).shape == (2, 3)
    assert EncoderForMultipleChoice(encoder)(torch.randint(0, 60, (2, 4, 9))).shape == (2, 4)


def test_config_errors():
    with pytest.raises(LmstackError, match="family 'bert'"):
        build_encoder(preset("gpt2-tiny"))
    with pytest.raises(LmstackError, match="bias"):
        build_encoder(CONFIG.replace(bias=False, qkv_bias=False))
    with pytest.raises(LmstackError, match="exceeds"):
        build_encoder(CONFIG)(torch.zeros(1, 33, dtype=torch.long))


WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "dog", "ran", "far",
         "away", "##s", "a", "red", "ball", ",", "."]


def _wordpiece() -> tuple[Tokenizer, transformers.PreTrainedTokenizerBase]:
    """A tiny BERT WordPiece tokenizer: ours, and transformers' BertTokenizer from the same vocabulary."""
    backend = Backend(models.WordPiece({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.add_special_tokens(WORDS[:5])
    return Tokenizer(backend, bos_token=None, eos_token=None, pad_token="[PAD]"), \
        transformers.BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)})


@pytest.mark.parametrize("max_len", [6, 9, 12, 64])
def test_encode_pairs_matches_bert_tokenizer(max_len):
    ours, theirs = _wordpiece()
    texts = ["The cat sat on the mat.", "a dog", "Dogs ran far away, far far away", "red"]
    pairs = ["a red ball", "the cat sat on the red mat , the dog ran", "cats", "the dog ran far away"]
    for p in (None, pairs):
        got = encode_pairs(ours, texts, p, max_len=max_len)
        want = theirs(texts, p, truncation=True, max_length=max_len, padding=True, return_tensors="pt")
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            assert torch.equal(got[key], want[key]), (key, p is None)


def test_lmstack_tokenizer_frames_with_its_own_specials():
    tok = train_char(["hello world"])
    s = specials(tok)
    batch = encode_pairs(tok, ["hello", "he"], ["world", "w"], max_len=32)
    ids = batch["input_ids"][1].tolist()
    assert ids[0] == tok.bos_id == s.cls_id and s.mask is not None
    assert ids[:6] == [s.cls_id, *tok.encode("he"), s.sep_id, *tok.encode("w"), s.sep_id]
    assert ids[6:] == [tok.pad_id] * (len(ids) - 6)
    assert batch["token_type_ids"][1].tolist()[:6] == [0, 0, 0, 0, 1, 1]
    # A special token's text inside a passage stays text: it cannot forge a separator.
    assert s.sep_id not in encode_pairs(tok, ["a <|eos|> b"])["input_ids"][0, 1:-1].tolist()
