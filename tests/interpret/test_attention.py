"""Attention maps of a text: token pieces (Chinese split over byte tokens), maps, per-head statistics against a
loop-by-loop reference and hand-built heads, PNG grids, and the `inspect attention` command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lmstack import cli
from lmstack.errors import LmstackError
from lmstack.interpret.attention import attention_for_ids, collect_attention
from lmstack.interpret.attention_commands import inspect_attention, inspect_logit_lens
from lmstack.interpret.attention_plots import plot_head, plot_layer
from lmstack.interpret.head_stats import STATS, head_statistics, heads_markdown, top_heads
from lmstack.interpret.token_pieces import token_pieces
from lmstack.model import build_model, preset
from lmstack.model.hf import save_model
from lmstack.text.tokenizer import train_bpe

TEXT = ["The river town of Kell trades salt and amber. 凯尔河镇以盐和琥珀贸易为生。", "hello world, 你好，世界！"] * 20
ZH = "凯尔河镇以盐和琥珀贸易为生。Kell trades amber."


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe(TEXT, vocab_size=300)


def tiny(name: str, vocab: int, block_size: int = 64, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(preset(name, vocab_size=vocab, block_size=block_size, n_layer=2, **kw)).eval()


@pytest.fixture(scope="module")
def model_dir(tokenizer, tmp_path_factory):
    return save_model(tiny("llama-tiny", tokenizer.vocab_size), tmp_path_factory.mktemp("llama"), tokenizer)


def test_pieces_concatenate_to_the_text_and_split_han_characters_are_labelled(tokenizer):
    ids = tokenizer.encode(ZH)
    tp = token_pieces(tokenizer, ids)
    assert "".join(tp.pieces) == tokenizer.decode(ids) == ZH
    assert any(tp.fragment), "the tiny BPE should split some Chinese character over byte tokens"
    for i, frag in enumerate(tp.fragment):
        if frag:  # a character's leading bytes: labelled with that character, which a later token completes
            k = next(k for k in range(i + 1, len(ids)) if tp.pieces[k])
            assert tp.pieces[i] == "" and tp.labels[i] == tp.pieces[k][0] and ord(tp.labels[i]) > 127
            assert tp.words[i] == tp.words[k]
    assert "\ufffd" not in "".join(tp.labels) and sum(tp.words[i] >= 0 for i in range(len(ids)) if tp.fragment[i])
    assert tokenizer.decode([ids[tp.fragment.index(True)]]) == "\ufffd"  # what decoding that token alone gives
    kell = [tp.words[i] for i, p in enumerate(tp.pieces) if p.strip() and p.strip() in "Kell"]
    assert len(set(kell)) == 1  # the tokens of one word share its unit
    assert tp.words[-1] == -1  # "."


def test_maps_are_causal_distributions_of_the_right_shape(tokenizer, model_dir):
    from lmstack.model.hf import load_model

    model = load_model(model_dir)
    run = collect_attention(model, tokenizer, ZH)
    T = len(tokenizer.encode(ZH))
    assert run.maps.shape == (2, model.config.n_head, T, T) and run.truncated == 0
    np.testing.assert_allclose(run.maps.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(run.maps, k=1) == 0)


def test_a_text_longer_than_the_context_is_refused_or_truncated(tokenizer):
    model = tiny("gpt2-tiny", tokenizer.vocab_size, block_size=16)
    n = len(tokenizer.encode(ZH * 3))
    with pytest.raises(LmstackError, match=f"{n} tokens exceed the model's context of 16 tokens"):
        collect_attention(model, tokenizer, ZH * 3)
    run = collect_attention(model, tokenizer, ZH * 3, truncate=True)
    assert run.shape[2] == 16 and run.truncated == n - 16


def test_encoder_maps_are_bidirectional(tokenizer):
    model = tiny("bert-tiny", tokenizer.vocab_size, n_embd=32, n_head=4)
    run = attention_for_ids(model, tokenizer, tokenizer.encode(ZH))
    np.testing.assert_allclose(run.maps.sum(-1), 1.0, atol=1e-5)
    assert np.triu(run.maps, k=1).sum() > 1.0


def _reference(A: np.ndarray, ids: list[int], words: list[int]) -> dict[str, float | None]:
    """The statistics of one head [T, T], query by query."""
    T = len(ids)
    acc: dict[str, list[float]] = {s: [] for s in STATS}
    for i in range(1, T):
        acc["entropy"].append(-sum(p * math.log(p) for p in A[i] if p > 0))
        acc["previous"].append(A[i, i - 1])
        acc["first"].append(A[i, 0])
        acc["self"].append(A[i, i])
        same = [j for j in range(T) if j != i and words[i] >= 0 and words[j] == words[i]]
        if same:
            acc["same_word"].append(sum(A[i, j] for j in same))
        dup = [j for j in range(i) if ids[j] == ids[i]]
        if dup:
            acc["same_token"].append(sum(A[i, j] for j in dup))
        ind = [j for j in range(i - 1) if ids[j] == ids[i]]
        if ind:
            acc["induction"].append(sum(A[i, j + 1] for j in ind))
    return {s: (float(np.mean(v)) if v else None) for s, v in acc.items()}


def test_statistics_equal_a_query_by_query_reference():
    rng = np.random.default_rng(0)
    T = 12
    A = rng.random((2, 3, T, T)) * np.tril(np.ones((T, T)))
    A /= A.sum(-1, keepdims=True)
    ids = [5, 6, 7, 5, 6, 8, 5, 9, 9, 6, 7, 1]
    words = [0, 0, 1, -1, 2, 2, 2, 3, -1, 4, 4, 5]
    rows = head_statistics(A.astype(np.float32), ids, words)
    for row in rows:
        ref = _reference(A[row["layer"], row["head"]], ids, words)
        for s in STATS:
            assert row[s] == pytest.approx(ref[s], rel=1e-5, abs=1e-6), (row["layer"], row["head"], s)


def test_hand_built_heads_have_their_roles():
    n = 6
    ids = list(range(10, 10 + n)) * 2  # a repeated sequence: the second half can copy the first
    T = len(ids)
    prev, uniform, sink, induction = (np.zeros((T, T)) for _ in range(4))
    for i in range(T):
        prev[i, max(i - 1, 0)] = 1
        uniform[i, :i + 1] = 1 / (i + 1)
        sink[i, 0] = 1
        induction[i, i - n + 1 if i >= n else 0] = 1
    maps = np.stack([prev, uniform, sink, induction])[None].astype(np.float32)
    rows = head_statistics(maps, ids, [-1] * T)
    assert rows[0]["previous"] == 1 and rows[0]["entropy"] == 0
    assert rows[1]["entropy"] == pytest.approx(np.mean([math.log(i + 1) for i in range(1, T)]), rel=1e-6)
    assert rows[2]["first"] == 1 and rows[3]["induction"] == 1 and rows[0]["induction"] == 0
    assert rows[0]["same_word"] is None  # no word has two tokens
    assert [r["head"] for r in top_heads(rows, "entropy", 2)] in ([0, 2], [2, 0])
    assert top_heads(rows, "induction", 1)[0]["head"] == 3
    assert "- induction: 0.3 = 1.000" in heads_markdown(rows)


def test_png_grids_with_chinese_labels_and_without_labels(tokenizer, tmp_path):
    model = tiny("llama-tiny", tokenizer.vocab_size, block_size=128)
    short = collect_attention(model, tokenizer, ZH)
    long = collect_attention(model, tokenizer, ZH * 2)
    assert long.shape[2] > 48
    for path in (plot_head(short, 0, 1, tmp_path / "a.png"), plot_layer(long, 0, tmp_path / "b.png")):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_inspect_attention_writes_everything_and_keeps_earlier_outputs(model_dir, tmp_path):
    out = tmp_path / "out"
    figures = inspect_attention(model_dir, text=ZH, out=out)
    assert sorted(p.name for p in out.iterdir()) == ["heads.json", "heads.md", "layer_00.png", "layer_01.png",
                                                      "viewer.html"]
    heads = json.loads((out / "heads.json").read_text(encoding="utf-8"))
    assert len(heads["heads"]) == 2 * 4 and "".join(heads["pieces"]) == ZH
    assert figures["tokens"] == len(heads["ids"]) and figures["layers"] == 2
    before = (out / "heads.json").read_bytes()
    with pytest.raises(LmstackError, match="viewer.html exists .*--overwrite"):
        inspect_attention(model_dir, text="other text", out=out)
    with pytest.raises(LmstackError, match="exceed the model's context of 64"):
        inspect_attention(model_dir, text=ZH * 10, out=out, overwrite=True)
    assert (out / "heads.json").read_bytes() == before  # refused runs wrote nothing
    inspect_attention(model_dir, text="other text", out=out, overwrite=True)
    assert (out / "heads.json").read_bytes() != before
    file = tmp_path / "t.txt"
    file.write_bytes(b"ok \xff")
    with pytest.raises(LmstackError, match="not UTF-8"):
        inspect_attention(model_dir, file=file, out=tmp_path / "x")
    with pytest.raises(LmstackError, match="one of them"):
        inspect_attention(model_dir, text="a", file=file, out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_the_commands_run_from_the_cli(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "inspect attention",
                        ("lmstack.interpret.attention_commands:inspect_attention", "attention maps"))
    monkeypatch.setitem(cli.COMMANDS, "inspect logit-lens",
                        ("lmstack.interpret.attention_commands:inspect_logit_lens", "logit lens"))
    cli.main(["inspect", "attention", str(model_dir), "--text", "你好 world", "--out", str(tmp_path / "a"), "--json"])
    assert json.loads(capsys.readouterr().out)["layers"] == 2
    cli.main(["inspect", "logit-lens", str(model_dir), "--text", "你好 world", "--out", str(tmp_path / "l"), "--json"])
    assert json.loads(capsys.readouterr().out)["tokens"] > 1
    for fn in (inspect_attention, inspect_logit_lens):  # every option documented (as tests/test_cli_commands.py)
        docs = cli._param_docs(fn)
        assert all(docs.get(p) for p in fn.__code__.co_varnames[:fn.__code__.co_argcount])
    with pytest.raises(SystemExit) as stop:
        cli.main(["inspect", "attention", str(model_dir), "--text", ZH * 10, "--out", str(tmp_path / "b")])
    assert stop.value.code != 0 and not (tmp_path / "b").exists()
