"""Reward models: Hugging Face parity of the score heads (both directions), the Bradley-Terry loss against its
closed form, the scorer's encoding, learning a synthetic preference, exact resume, the CLI and bad input."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
import transformers

from lmstack import cli
from lmstack.align.bradley_terry import bradley_terry_loss, pair_metrics
from lmstack.align.data import answer_ids, prompt_ids
from lmstack.align.reward_commands import RewardConfig, reward_eval, train_reward
from lmstack.align.reward_model import (RewardScorer, load_reward_model, save_reward_model, start_reward_model)
from lmstack.data.synth import DATASETS, build_world
from lmstack.errors import LmstackError
from lmstack.model import build_model, preset
from lmstack.model.families.bert import build_encoder, load_encoder
from lmstack.model.heads import EncoderForSequenceClassification
from lmstack.model.hf import load_causal_lm, load_model, save_model
from lmstack.model.sequence_classification import DecoderForSequenceClassification, last_token_index
from lmstack.text.chat import ChatFormat
from lmstack.text.tokenizer import train_bpe

VOCAB, PAD = 97, 0
DECODERS = {  # ours -> the transformers class that must load it
    "gpt2": (dict(name="gpt2-tiny", n_layer=2), "GPT2ForSequenceClassification"),
    "llama": (dict(name="llama-tiny", n_layer=2), "LlamaForSequenceClassification"),
    "llama-untied": (dict(name="llama-tiny", n_layer=2, tie_embeddings=False), "LlamaForSequenceClassification"),
    "qwen2": (dict(name="llama-tiny", n_layer=2, qkv_bias=True), "Qwen2ForSequenceClassification"),
}
THEIRS = {
    "gpt2": lambda: transformers.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4),
    "llama": lambda: transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                              max_position_embeddings=64),
    "qwen2": lambda: transformers.Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                              max_position_embeddings=64),
}


def _randomise(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


def _right_padded(lengths: tuple[int, ...] = (20, 13, 7), T: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, VOCAB, (len(lengths), T), generator=g)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, n:], mask[row, :n] = PAD, 1
    return ids, mask


# ----------------------------------------------------------------------------------------------- HF parity

@pytest.mark.parametrize("case", DECODERS)
def test_decoder_reward_model_loads_in_transformers_with_the_same_scores(case, tmp_path):
    kw, arch = dict(DECODERS[case][0]), DECODERS[case][1]
    torch.manual_seed(0)
    ours = DecoderForSequenceClassification(build_model(preset(kw.pop("name"), vocab_size=VOCAB, **kw)), 1, PAD)
    _randomise(ours)
    ours.eval()
    save_model(ours, tmp_path / "rm")
    config = json.loads((tmp_path / "rm" / "config.json").read_text())
    assert config["architectures"] == [arch] and config["num_labels"] == 1 and config["pad_token_id"] == PAD
    assert not (tmp_path / "rm" / "generation_config.json").exists()
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm").eval()
    assert type(theirs).__name__ == arch
    ids, mask = _right_padded()
    with torch.no_grad():
        a, b = ours(ids, mask), theirs(input_ids=ids, attention_mask=mask).logits
    assert a.shape == (3, 1)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # each row alone (no padding) scores as in the batch: the head reads the last real token
    with torch.no_grad():
        alone = torch.cat([ours(ids[i:i + 1, :n]) for i, n in enumerate((20, 13, 7))])
    torch.testing.assert_close(alone, a, atol=1e-5, rtol=0)
    again = load_model(tmp_path / "rm").eval()
    assert isinstance(again, DecoderForSequenceClassification) and again.pad_token_id == PAD
    with torch.no_grad():
        assert torch.equal(again(ids, mask), a)


@pytest.mark.parametrize("case", THEIRS)
def test_transformers_reward_model_loads_here_with_the_same_scores(case, tmp_path):
    torch.manual_seed(0)
    config = THEIRS[case]()
    config.num_labels, config.pad_token_id = 1, PAD
    theirs = transformers.AutoModelForSequenceClassification.from_config(config).eval()
    _randomise(theirs)
    theirs.save_pretrained(tmp_path / "hf")
    ours = load_model(tmp_path / "hf").eval()
    assert isinstance(ours, DecoderForSequenceClassification)
    ids, mask = _right_padded()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, mask), theirs(input_ids=ids, attention_mask=mask).logits, atol=1e-5,
                                   rtol=0)


def test_encoder_reward_model_matches_transformers_both_ways(tmp_path):
    torch.manual_seed(0)
    ours = EncoderForSequenceClassification(build_encoder(preset("bert-tiny", vocab_size=VOCAB)), 1)
    _randomise(ours)
    ours.eval()
    save_model(ours, tmp_path / "rm")
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm").eval()
    assert type(theirs).__name__ == "BertForSequenceClassification" and theirs.config.num_labels == 1
    ids, mask = _right_padded()
    types = torch.zeros_like(ids)
    types[:, 5:] = mask[:, 5:]
    with torch.no_grad():
        a = ours(ids, mask, types)
        torch.testing.assert_close(a, theirs(input_ids=ids, attention_mask=mask, token_type_ids=types).logits,
                                   atol=1e-5, rtol=0)
    _randomise(theirs)
    theirs.save_pretrained(tmp_path / "hf")
    back, _ = load_encoder(tmp_path / "hf", head="classification")
    with torch.no_grad():
        torch.testing.assert_close(back(ids, mask, types),
                                   theirs(input_ids=ids, attention_mask=mask, token_type_ids=types).logits,
                                   atol=1e-5, rtol=0)


def test_last_token_index_is_transformers_rule():
    ids = torch.tensor([[5, 6, 7, 0, 0], [0, 0, 5, 6, 7], [5, 0, 6, 0, 0], [0, 0, 0, 0, 0]])
    assert last_token_index(ids, 0).tolist() == [2, 4, 2, 0]
    assert last_token_index(ids, None).tolist() == [4, 4, 4, 4]


def test_a_reward_model_is_no_causal_lm_and_a_causal_lm_is_no_reward_model(tmp_path):
    rm = DecoderForSequenceClassification(build_model(preset("llama-tiny", vocab_size=VOCAB, n_layer=1)), 1, PAD)
    save_model(rm, tmp_path / "rm")
    with pytest.raises(LmstackError, match="LlamaForSequenceClassification"):
        load_causal_lm(tmp_path / "rm")
    save_model(build_model(preset("llama-tiny", vocab_size=VOCAB, n_layer=1)), tmp_path / "lm")
    with pytest.raises(LmstackError, match="not a reward model"):
        load_reward_model(tmp_path / "lm")
    three = DecoderForSequenceClassification(build_model(preset("llama-tiny", vocab_size=VOCAB, n_layer=1)), 3, PAD)
    save_model(three, tmp_path / "three")
    with pytest.raises(LmstackError, match="3 labels"):
        load_reward_model(tmp_path / "three")
    with pytest.raises(LmstackError, match="not found"):
        load_reward_model(tmp_path / "nowhere")


# ----------------------------------------------------------------------------------------------- the loss

def test_bradley_terry_loss_is_its_closed_form():
    chosen = torch.tensor([1.5, -0.2, 0.3, 2.0])
    rejected = torch.tensor([0.5, 0.4, 0.3, -1.0])
    margin = torch.tensor([0.0, 0.5, 1.0, -0.25])

    def closed(m, c):
        terms = [math.log(1 + math.exp(-(a - b - mm))) for a, b, mm in zip(chosen.tolist(), rejected.tolist(), m)]
        center = sum((a + b) ** 2 for a, b in zip(chosen.tolist(), rejected.tolist())) / 4
        return sum(terms) / 4 + c * center

    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(closed([0.0] * 4, 0.0), abs=1e-6)
    assert bradley_terry_loss(chosen, rejected, margin).item() == pytest.approx(closed(margin.tolist(), 0.0),
                                                                                abs=1e-6)
    assert bradley_terry_loss(chosen, rejected, 0.7, 0.01).item() == pytest.approx(closed([0.7] * 4, 0.01), abs=1e-6)
    m = pair_metrics(chosen, rejected)
    assert m["accuracy"].item() == 0.5  # the tie (0.3, 0.3) counts as wrong
    assert m["margin"].item() == pytest.approx((1.0 - 0.6 + 0.0 + 3.0) / 4)
    # its gradient pushes the chosen reward up and the rejected one down
    c, r = chosen.clone().requires_grad_(), rejected.clone().requires_grad_()
    bradley_terry_loss(c, r).backward()
    assert (c.grad < 0).all() and (r.grad > 0).all() and torch.allclose(c.grad, -r.grad)


# ----------------------------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Synthetic preferences (and the share a model without world knowledge can learn: rude or wrong-language
    rejections), a ChatML tokenizer trained on them, and tiny random decoder / encoder folders."""
    root = tmp_path_factory.mktemp("world")
    made = DATASETS["preferences"](build_world(0), random.Random("0:dataset:preferences"), 0.5)
    for split, records in made.items():
        for name, keep in (("preferences", records), ("learnable", [r for r in records if r["kind"] != "wrong_fact"])):
            (root / f"{name}_{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                                 for r in keep))
    texts = [t for r in made["train"] for t in (r["prompt"][-1]["content"], r["chosen"], r["rejected"])]
    tokenizer = train_bpe(texts, vocab_size=400)
    torch.manual_seed(0)
    decoder = save_model(build_model(preset("llama-tiny", vocab_size=tokenizer.vocab_size, block_size=128,
                                            n_layer=2, n_embd=64)), root / "decoder", tokenizer)
    encoder = save_model(build_encoder(preset("bert-tiny", vocab_size=tokenizer.vocab_size, n_embd=64)),
                         root / "encoder", tokenizer)
    return {"root": root, "decoder": decoder, "encoder": encoder, "tokenizer": tokenizer,
            "train": root / "preferences_train.jsonl", "test": root / "preferences_test.jsonl",
            "learnable": (root / "learnable_train.jsonl", root / "learnable_test.jsonl")}


def _cfg(world, out, **kw) -> RewardConfig:
    base = dict(model=world["decoder"], data=[world["train"]], out=out, max_len=96, batch_size=8, max_iters=8,
                eval_interval=4, eval_iters=2, log_interval=1, checkpoint_interval=4, warmup_iters=2, lr=1e-3,
                device="cpu", precision="fp32")
    return RewardConfig(**{**base, **kw})


def test_scorer_encodes_as_the_alignment_data_and_batches_exactly(world, tmp_path):
    torch.manual_seed(0)
    model, tokenizer, kind = start_reward_model(world["decoder"])
    assert kind == "decoder" and model.pad_token_id == tokenizer.pad_id
    _randomise(model)
    path = save_reward_model(model, tokenizer, tmp_path / "rm", max_len=96)
    scorer = RewardScorer.load(path)
    assert scorer.kind == "decoder" and scorer.max_len == 96
    prompts = [[{"role": "user", "content": "Where does Ada live?"}], [{"role": "user", "content": "2 + 2?"}]]
    replies = ["Sure! Ada lives in a small town by the sea.", "4"]
    chat = ChatFormat(tokenizer)
    seqs = []
    for p, r in zip(prompts, replies):
        first = prompt_ids(chat, p, 96, 1, "test")
        seqs.append(first + answer_ids(chat, p, first, r, "test"))
    assert seqs[0][-1] in chat.end_ids
    by_text, by_ids = scorer.score(prompts, replies), scorer.score_ids(seqs)
    with torch.no_grad():
        alone = torch.cat([scorer.model(torch.tensor([s])).squeeze(-1) for s in seqs])
    assert by_text.shape == (2,)
    torch.testing.assert_close(by_text, by_ids)
    torch.testing.assert_close(by_text, alone, atol=1e-5, rtol=0)
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(path).eval()
    batch = scorer.text.inputs([scorer.text.pair(p, r, "t") for p, r in zip(prompts, replies)])
    with torch.no_grad():
        torch.testing.assert_close(theirs(**batch).logits.squeeze(-1), by_text, atol=1e-5, rtol=0)


def test_an_empty_sampled_reply_is_scored_as_its_turn_end(world, tmp_path):
    """PPO samples answers that may end their turn at once: the scorer reads them as the turn-end token alone."""
    torch.manual_seed(0)
    model, tokenizer, _ = start_reward_model(world["decoder"])
    scorer = RewardScorer.load(save_reward_model(model, tokenizer, tmp_path / "rm", max_len=96))
    prompt = [{"role": "user", "content": "2 + 2?"}]
    first = prompt_ids(ChatFormat(tokenizer), prompt, 96, 1, "test")
    end = tokenizer.token_to_id(ChatFormat(tokenizer).turn_end)
    torch.testing.assert_close(scorer.score([prompt], [""]), scorer.score_ids([first + [end]]))


def test_a_tiny_decoder_reward_model_learns_the_synthetic_preference(world, tmp_path):
    """From random weights (no world knowledge: wrong facts are left out), 100 steps learn to prefer the polite
    answer on held-out prompts (rude rejections: all of them, over seeds 1337, 1, 2) and begin to prefer the asked
    language (held-out accuracy 0.76-0.80 over those seeds; chance is 0.5)."""
    train, test = world["learnable"]
    result = train_reward(_cfg(world, tmp_path / "run", data=[train], val_data=[test], max_iters=100, batch_size=16,
                               eval_interval=100, checkpoint_interval=100, log_interval=10, lr=4e-3, warmup_iters=10))
    assert result["kind"] == "decoder" and result["val_pairs"] >= 40
    assert result["loss_last"] < result["loss_first"] - 0.3
    assert result["val_accuracy"] >= 0.7, result
    learnable = reward_eval(tmp_path / "run" / "model", [test], out=tmp_path / "eval", device="cpu")
    assert learnable["accuracy"] == pytest.approx(result["val_accuracy"])
    assert learnable["accuracy_by_kind"]["rude"] >= 0.95
    everything = reward_eval(tmp_path / "run" / "model", [world["test"]], out=tmp_path / "eval2", device="cpu")
    assert set(everything["accuracy_by_kind"]) == {"rude", "wrong_fact", "wrong_language"}


def test_resume_is_the_uninterrupted_run(world, tmp_path):
    fixed = dict(lr_decay_iters=8)
    straight = train_reward(_cfg(world, tmp_path / "a", max_iters=8, **fixed))
    train_reward(_cfg(world, tmp_path / "b", max_iters=4, **fixed))  # stops at the checkpoint of iteration 4
    resumed = train_reward(_cfg(world, tmp_path / "b", max_iters=8, **fixed), resume=True)
    assert resumed["loss"] == straight["loss"]

    def losses(run):
        return [(r["iter"], r["loss"], r["accuracy"]) for r in map(json.loads, (run / "metrics.jsonl").open())
                if "loss" in r]
    assert losses(tmp_path / "a") == losses(tmp_path / "b") and len(losses(tmp_path / "a")) == 8
    a, b = (load_reward_model(tmp_path / run / "model")[0].state_dict() for run in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(LmstackError, match="--resume"):
        train_reward(_cfg(world, tmp_path / "a", max_iters=8, **fixed))


def test_cli_trains_an_encoder_reward_model_and_evaluates_it(world, tmp_path, capsys):
    out = tmp_path / "enc"
    cli.main(["train-reward", "--model", str(world["encoder"]), "--data", str(world["train"]), "--out", str(out),
              "--max_len", "96", "--max_iters", "6", "--batch_size", "4", "--eval_iters", "1", "--device", "cpu",
              "--center_rewards_coefficient", "0.01", "--json"])
    trained = json.loads(capsys.readouterr().out)
    assert trained["kind"] == "encoder" and trained["iters"] == 6
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"] and len(config["id2label"]) == 1
    cli.main(["reward-eval", "--model", str(out / "model"), "--data", str(world["test"]), "--out",
              str(tmp_path / "eval"), "--device", "cpu", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "encoder" and 0 <= report["accuracy"] <= 1 and report["pairs"] >= 20
    assert (tmp_path / "eval" / "margins.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "eval" / "report.json").read_text())["accuracy"] == report["accuracy"]
    scorer = RewardScorer.load(out / "model")
    scores = scorer.score([[{"role": "user", "content": "hi"}]] * 2, ["Sure! Hello.", "Ugh."])
    assert scores.shape == (2,) and torch.isfinite(scores).all()
    with pytest.raises(LmstackError, match="decoder"):
        scorer.score_ids([[1, 2, 3]])


def test_bad_input_is_one_line_and_writes_nothing(world, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["reward-eval", "--model", str(world["decoder"]), "--data", str(world["test"]), "--out",
                  str(tmp_path / "e")])
    assert stop.value.code != 0 and "not a reward model" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(LmstackError, match="no preference records"):
        train_reward(_cfg(world, tmp_path / "r", data=[empty]))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "hi", "chosen": "a", "rejected": "b", "margin": "big"}) + "\n")
    with pytest.raises(LmstackError, match=r"bad.jsonl:1: margin"):
        train_reward(_cfg(world, tmp_path / "r", data=[bad], val_data=[bad]))
    with pytest.raises(LmstackError, match="exceeds the context"):
        train_reward(_cfg(world, tmp_path / "r", max_len=4096))
    assert not (tmp_path / "r").exists()
