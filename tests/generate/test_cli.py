"""``lmstack generate``: loads a model directory, streams to stdout, reports a dict."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lmstack.cli import main
from lmstack.generate import generate
from lmstack.generate.api import pieces
from lmstack.generate.config import GenerationConfig
from lmstack.model.hf import load_model, save_model
from lmstack.text.chat import ChatFormat
from lmstack.text.stream import TextStream
from lmstack.text.tokenizer import IM_END, Tokenizer


@pytest.fixture(scope="module")
def model_dir(text_model, tokenizer, tmp_path_factory):
    return save_model(text_model, tmp_path_factory.mktemp("model"), tokenizer=tokenizer)


def test_streams_the_completion_then_reports(model_dir, capsys):
    main(["generate", "你好，", "--model", str(model_dir), "--max-new-tokens", "12"])
    out = capsys.readouterr().out
    expected = generate(load_model(model_dir).eval(), Tokenizer.load(model_dir), "你好，", max_new_tokens=12)
    assert out.startswith(expected + "\n")
    assert "tokens: 12\n" in out and "tokens_per_s:" in out


def test_json_output_is_one_object(model_dir):
    run = subprocess.run([sys.executable, "-m", "lmstack", "generate", "The river", "a", "--model", str(model_dir),
                          "--max-new-tokens", "6", "--num-beams", "2", "--json"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    model, tokenizer = load_model(model_dir).eval(), Tokenizer.load(model_dir)
    assert result["prompt"] == ["The river", "a"]
    assert result["completion"] == generate(model, tokenizer, ["The river", "a"], max_new_tokens=6, num_beams=2)
    assert result["tokens"] == [6, 6] and result["tokens_per_s"] > 0


def test_too_long_a_prompt_is_a_one_line_error(model_dir, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "The river town of Kell " * 40, "--model", str(model_dir)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "but the model's context is 128 tokens" in err


def test_chat_prompts_are_encoded_by_the_chat_format_and_end_at_the_turn(model_dir, capsys):
    main(["generate", "你好", "--model", str(model_dir), "--chat", "--max-new-tokens", "12", "--json"])
    result = json.loads(capsys.readouterr().out)
    model, tokenizer = load_model(model_dir).eval(), Tokenizer.load(model_dir)
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "你好"}], add_generation_prompt=True)
    assert result["prompt"] == rendered
    assert result["completion"] == generate(model, tokenizer, rendered, max_new_tokens=12, stop=[IM_END])


def test_a_row_ends_at_a_stop_id_left_out_of_its_text(model_dir):
    model, tokenizer = load_model(model_dir).eval(), Tokenizer.load(model_dir)
    prompts = [tokenizer.encode("The river"), tokenizer.encode("a")]  # token ids decode as their text would
    streams = [TextStream(tokenizer) for _ in prompts]
    for _ in pieces(model, tokenizer, prompts, GenerationConfig(max_new_tokens=8), streams):
        pass
    free = [s.ids for s in streams]
    k = next(k for k in range(1, 8) if free[0][k] not in free[0][:k])
    stop = free[0][k]
    cut = [row[:row.index(stop)] if stop in row else row for row in free]
    texts = generate(model, tokenizer, prompts, max_new_tokens=8, stop_ids={stop})
    assert texts == [tokenizer.decode(row) for row in cut] and len(cut[0]) == k
    assert generate(model, tokenizer, ["The river", "a"], max_new_tokens=8) == [tokenizer.decode(r) for r in free]
    assert ChatFormat(tokenizer).end_ids == {tokenizer.eos_id, tokenizer.token_to_id(IM_END)}
