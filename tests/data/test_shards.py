import json
import shutil

import numpy as np
import pytest
import torch

from lmstack.data.shards import TokenShards
from lmstack.text.tokenizer import Tokenizer
from lmstack.errors import LmstackError


def all_tokens(shards: TokenShards) -> np.ndarray:
    return np.concatenate([np.asarray(m) for m in shards.shards])


def test_length_and_figures_come_from_the_manifest(prepared):
    manifest = json.loads((prepared / "manifest.json").read_text())
    for split in ("train", "val"):
        shards = TokenShards(prepared, split)
        info = manifest["splits"][split]
        assert len(shards) == info["tokens"] == len(all_tokens(shards))
        assert (shards.documents, shards.bytes) == (info["documents"], info["bytes"])


def test_reads_across_shard_boundaries(prepared):
    shards = TokenShards(prepared)
    assert len(shards.shards) > 1
    boundary = len(shards.shards[0])
    np.testing.assert_array_equal(shards.tokens(boundary - 5, boundary + 7),
                                  all_tokens(shards)[boundary - 5:boundary + 7])


def test_batch_is_random_windows_shifted_by_one(prepared):
    shards = TokenShards(prepared)
    tokens = all_tokens(shards)
    x, y = shards.batch(8, 32, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 32) and x.dtype == y.dtype == torch.int64
    starts = torch.randint(len(shards) - 32, (8,), generator=torch.Generator().manual_seed(0))
    for row_x, row_y, s in zip(x, y, starts.tolist()):
        np.testing.assert_array_equal(row_x.numpy(), tokens[s:s + 32])
        np.testing.assert_array_equal(row_y.numpy(), tokens[s + 1:s + 33])


def test_generator_state_resumes_to_identical_batches(prepared):
    shards = TokenShards(prepared)
    g = torch.Generator().manual_seed(1234)
    shards.batch(4, 16, g)
    state = g.get_state()
    expected = [shards.batch(4, 16, g) for _ in range(3)]
    resumed = torch.Generator()
    resumed.set_state(state)
    for (x, y), (ex, ey) in zip((shards.batch(4, 16, resumed) for _ in range(3)), expected):
        assert torch.equal(x, ex) and torch.equal(y, ey)
    other = shards.batch(4, 16, torch.Generator().manual_seed(99))
    assert not torch.equal(other[0], expected[0][0])


def test_iter_windows_targets_every_token_but_the_first_exactly_once(prepared):
    shards = TokenShards(prepared, "val")
    tokens = all_tokens(shards)
    batches = list(shards.iter_windows(block_size=64, batch_size=5))
    assert all(x.shape[1] == 64 and x.shape[0] <= 5 for x, _ in batches[:-1])
    xs = torch.cat([x.flatten() for x, _ in batches]).numpy()
    ys = torch.cat([y.flatten() for _, y in batches]).numpy()
    np.testing.assert_array_equal(xs, tokens[:-1])
    np.testing.assert_array_equal(ys, tokens[1:])


def test_batches_decode_to_corpus_text(prepared):
    shards, tok = TokenShards(prepared), Tokenizer.load(prepared)
    stream = tok.decode(all_tokens(shards))
    assert stream.count("<|eos|>") == shards.documents
    x, _ = shards.batch(4, 64, torch.Generator().manual_seed(0))
    for row in x:
        assert tok.decode(row).strip("\ufffd") in stream  # a window may cut a character's bytes at its edges


def test_refuses_shards_from_another_tokenizer(prepared):
    TokenShards(prepared, tokenizer_sha256=Tokenizer.load(prepared).sha256)
    with pytest.raises(LmstackError, match="another tokenizer"):
        TokenShards(prepared, tokenizer_sha256="0" * 64)


def test_damaged_folders_are_clear_errors(prepared, tmp_path):
    with pytest.raises(LmstackError, match="manifest.json: file not found"):
        TokenShards(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(prepared, copy)
    with pytest.raises(LmstackError, match="no split 'test'"):
        TokenShards(copy, "test")
    with open(copy / "train_001.bin", "r+b") as f:
        f.truncate(10)
    with pytest.raises(LmstackError, match="train_001.bin: holds 10 bytes but manifest.json says"):
        TokenShards(copy)
    (copy / "train_001.bin").unlink()
    with pytest.raises(LmstackError, match="train_001.bin: shard listed in manifest.json is missing"):
        TokenShards(copy)


def test_block_size_larger_than_the_split_is_an_error(prepared):
    shards = TokenShards(prepared, "val")
    with pytest.raises(LmstackError, match=f"val split has {len(shards)} tokens"):
        shards.batch(1, len(shards), torch.Generator())


def test_empty_split_is_an_error(corpus_jsonl, tmp_path):
    from lmstack.data.prepare import prepare

    prepare([corpus_jsonl], out=tmp_path, tokenizer="char", val_fraction=0)
    with pytest.raises(LmstackError, match="the val split is empty"):
        TokenShards(tmp_path, "val")
