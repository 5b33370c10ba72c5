"""Steering from the CLI and the Python API: DExperts, contrastive decoding, control codes (generate.steering)."""

from __future__ import annotations

import pytest
import torch

from lmstack.adapt.control_codes import CONTROL_FILE, TAG_FORMAT, control_ids, control_tag
from lmstack.adapt.lora import LoRA
from lmstack.adapt.merge import merge_adapter
from lmstack.adapt.methods import base_fingerprint, save_adapter
from lmstack.errors import LmstackError
from lmstack.generate import generate
from lmstack.generate.api import generate_cli
from lmstack.generate.config import GenerationConfig
from lmstack.generate.processors import top_p
from lmstack.generate.combine import OUTSIDE, DExperts, contrastive, dexperts
from lmstack.generate.steering import steer
from lmstack.io import write_json
from lmstack.model.hf import load_model, save_model
from lmstack.model.source import to_source
from lmstack.text.tokenizer import Tokenizer, train_bpe

from .conftest import TEXT, random_model

PROMPT = "The river town"


@pytest.fixture(scope="module")
def dirs(tokenizer, tmp_path_factory):
    """A base, an expert and an anti-expert (random, same tokenizer), and a model on another tokenizer."""
    root = tmp_path_factory.mktemp("steer")
    out = {name: save_model(random_model("gpt2-tiny", seed=seed, vocab_size=tokenizer.vocab_size), root / name,
                            tokenizer=tokenizer) for name, seed in (("base", 1), ("expert", 2), ("anti", 3))}
    other = train_bpe(TEXT, vocab_size=280)
    out["other"] = save_model(random_model("gpt2-tiny", seed=4, vocab_size=other.vocab_size), root / "other",
                              tokenizer=other)
    return out


def models(dirs, *names):
    return [load_model(dirs[n]).eval() for n in names]


def test_dexperts_mixes_logits_by_the_formula_inside_the_base_nucleus(dirs, tokenizer):
    base, expert, anti = models(dirs, "base", "expert", "anti")
    ids = torch.tensor([tokenizer.encode(PROMPT)])
    z = [m(ids)[:, -1].float() for m in (base, expert, anti)]
    source = dexperts(base, expert, anti, alpha=1.5, top_p=0.8)
    mixed = source.prefill(ids, source.new_cache(1))
    want = z[0] + 1.5 * (z[1] - z[2])
    inside = ~top_p(z[0], 0.8).isinf()
    assert 0 < inside.sum() < z[0].numel()
    torch.testing.assert_close(mixed[inside], want[inside], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mixed[~inside], want[~inside] - OUTSIDE, rtol=1e-5, atol=1e-3)
    assert (mixed.softmax(-1)[~inside] == 0).all()  # outside the nucleus: probability exactly zero


def test_alpha_zero_is_the_base_model_greedy_and_sampled(dirs, tokenizer):
    base, expert, anti = models(dirs, "base", "expert", "anti")
    greedy = generate(base, tokenizer, PROMPT, max_new_tokens=12)
    assert generate(dexperts(base, expert, anti, 0.0), tokenizer, PROMPT, max_new_tokens=12) == greedy
    assert generate(dexperts(base, expert, anti, 2.0), tokenizer, PROMPT, max_new_tokens=12) != greedy
    sampled = generate(base, tokenizer, PROMPT, max_new_tokens=12, do_sample=True, top_p=0.7, seed=3)
    # the nucleus cut on the base inside DExperts = the sampler's top-p on the base, token for token
    steered = generate(dexperts(base, expert, anti, 0.0, top_p=0.7), tokenizer, PROMPT, max_new_tokens=12,
                       do_sample=True, seed=3)
    assert steered == sampled


def test_negative_alpha_swaps_the_experts(dirs, tokenizer):
    base, expert, anti = models(dirs, "base", "expert", "anti")
    ids = torch.tensor([tokenizer.encode(PROMPT)])
    a = dexperts(base, expert, anti, -1.0)
    b = dexperts(base, anti, expert, 1.0)
    torch.testing.assert_close(a.prefill(ids, a.new_cache(1)), b.prefill(ids, b.new_cache(1)))


def test_contrastive_keeps_the_plausible_head_and_survives_a_forbidden_eos(dirs, tokenizer):
    base, amateur = models(dirs, "base", "anti")
    ids = torch.tensor([tokenizer.encode(PROMPT)])
    source = contrastive(base, amateur, 0.1)
    scores = source.prefill(ids, source.new_cache(1))
    lp, la = (m(ids)[:, -1].float().log_softmax(-1) for m in (base, amateur))
    head = lp >= lp.max() + torch.log(torch.tensor(0.1))
    torch.testing.assert_close(scores[head], (lp - la)[head])
    assert (scores.softmax(-1)[~head] == 0).all()
    # every row still has a finite draw when min_new_tokens forbids eos
    text = generate(source, tokenizer, PROMPT, max_new_tokens=10, min_new_tokens=10, do_sample=True, seed=0)
    assert isinstance(text, str)


def test_cli_dexperts_matches_the_python_api(dirs, tokenizer):
    base, expert, anti = models(dirs, "base", "expert", "anti")
    out = generate_cli([PROMPT], model=str(dirs["base"]), expert=str(dirs["expert"]), anti_expert=str(dirs["anti"]),
                       alpha=1.0, max_new_tokens=10, stream=False, dtype="float32")
    assert out["completion"] == generate(dexperts(base, expert, anti, 1.0), tokenizer, PROMPT, max_new_tokens=10)
    cd = generate_cli([PROMPT], model=str(dirs["base"]), amateur=str(dirs["anti"]), max_new_tokens=10,
                      stream=False, dtype="float32")
    assert cd["completion"] == generate(contrastive(base, anti, 0.1), tokenizer, PROMPT, max_new_tokens=10)


def test_steer_moves_the_samplers_top_p_to_the_base_nucleus(dirs, tokenizer):
    base = load_model(dirs["base"]).eval()
    config = GenerationConfig(do_sample=True, top_p=0.8)
    source, used = steer(base, tokenizer, dirs["base"], config, expert=dirs["expert"], dtype="float32")
    assert isinstance(source, DExperts) and source.top_p == 0.8 and used.top_p == 1.0
    same, unchanged = steer(base, tokenizer, dirs["base"], config)
    assert same is base and unchanged == config


def test_bad_steering_input_is_one_line(dirs, tokenizer):
    base = str(dirs["base"])
    with pytest.raises(LmstackError, match="tokenizer differs"):
        generate_cli([PROMPT], model=base, expert=str(dirs["other"]), max_new_tokens=2, stream=False)
    with pytest.raises(LmstackError, match="choose one steering method"):
        generate_cli([PROMPT], model=base, expert=str(dirs["expert"]), amateur=str(dirs["anti"]), stream=False)
    with pytest.raises(LmstackError, match="--alpha must be a finite number"):
        generate_cli([PROMPT], model=base, expert=str(dirs["expert"]), alpha=float("nan"), stream=False)
    with pytest.raises(LmstackError, match="alpha must be a finite number"):
        dexperts(to_source(load_model(base)), load_model(dirs["expert"]), None, "2")
    with pytest.raises(LmstackError, match="directory not found"):
        generate_cli([PROMPT], model=base, anti_expert=str(dirs["base"] / "missing"), stream=False)
    with pytest.raises(LmstackError, match="plausibility must be in"):
        generate_cli([PROMPT], model=base, amateur=str(dirs["anti"]), plausibility=0.0, stream=False)


@pytest.fixture(scope="module")
def control_dir(tokenizer, tmp_path_factory):
    folder = save_model(random_model("gpt2-tiny", seed=5, vocab_size=tokenizer.vocab_size),
                        tmp_path_factory.mktemp("control"), tokenizer=tokenizer)
    write_json(folder / CONTROL_FILE, {"format": TAG_FORMAT, "codes": {"sentiment": ["negative", "positive"],
                                                                      "topic": ["food"]}})
    return folder


def test_control_code_puts_the_tag_ids_in_front_of_the_prompt(control_dir):
    tok = Tokenizer.load(control_dir)
    tag = control_tag("sentiment", "positive")
    assert tag == "<sentiment=positive> "
    ids = control_ids(tok, tag, PROMPT)
    assert ids == tok.encode(tag, specials=False) + tok.encode(PROMPT, specials=False)
    out = generate_cli([PROMPT], model=str(control_dir), control="sentiment=positive", max_new_tokens=8,
                       stream=False, dtype="float32")
    net = load_model(control_dir).eval()
    assert out["completion"] == generate(net, tok, [ids], max_new_tokens=8)[0]
    assert out["prompt"] == PROMPT
    other = generate_cli([PROMPT], model=str(control_dir), control="sentiment=negative", max_new_tokens=8,
                         stream=False, dtype="float32")
    assert other["completion"] == generate(net, tok, [control_ids(tok, control_tag("sentiment", "negative"),
                                                                  PROMPT)], max_new_tokens=8)[0]


def test_unknown_control_code_lists_the_known_ones(control_dir, dirs):
    with pytest.raises(LmstackError) as err:
        generate_cli([PROMPT], model=str(control_dir), control="sentiment=happy", stream=False)
    assert str(err.value) == (f"--control sentiment=happy: unknown control code; {control_dir} knows: "
                              "sentiment=negative, sentiment=positive, topic=food")
    with pytest.raises(LmstackError, match="expected attribute=label"):
        generate_cli([PROMPT], model=str(control_dir), control="positive", stream=False)
    with pytest.raises(LmstackError, match="not trained with control codes"):
        generate_cli([PROMPT], model=str(dirs["base"]), control="sentiment=positive", stream=False)


def test_a_lora_adapter_is_an_expert_as_its_merged_model_is(dirs, tokenizer, tmp_path):
    """--expert ADAPTER_DIR: the LoRA adapter applied to the base (merged for decoding) steers exactly as the
    same weights saved as a model directory."""
    method = LoRA(r=2)
    adapted = method.apply(load_model(dirs["base"])).eval()
    with torch.no_grad():
        for p in adapted.parameters():
            if p.requires_grad:
                p.add_(0.3)
    save_adapter(method, adapted, tmp_path / "adapter", base_fingerprint(adapted), str(dirs["base"]))
    merged_dir = tmp_path / "merged"
    merge_adapter(str(dirs["base"]), str(tmp_path / "adapter"), out=str(merged_dir))
    config = GenerationConfig(max_new_tokens=8)
    base = load_model(dirs["base"]).eval()
    runs = []
    for expert in (tmp_path / "adapter", merged_dir):
        source, cfg = steer(base, tokenizer, dirs["base"], config, expert=expert, anti_expert=dirs["anti"], alpha=2.0)
        runs.append(generate(source, tokenizer, PROMPT, cfg))
    assert runs[0] == runs[1]
    untouched = steer(base, tokenizer, dirs["base"], config, expert=dirs["base"], anti_expert=dirs["anti"],
                      alpha=2.0)[0]
    ids = torch.tensor([tokenizer.encode(PROMPT)])
    lora = steer(base, tokenizer, dirs["base"], config, expert=tmp_path / "adapter", anti_expert=dirs["anti"],
                 alpha=2.0)[0]
    with torch.no_grad():  # the adapter's weights count: the mixture's logits move off the un-adapted expert's
        assert not torch.allclose(lora.prefill(ids, lora.new_cache(1)), untouched.prefill(ids, untouched.new_cache(1)))
