"""``lmstack generate``: loads a model directory, streams to stdout, reports a dict."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lmstack.cli import main
from lmstack.text.tokenizer import Tokenizer
from lmstack.generate import generate
from lmstack.model.hf import load_model, save_model


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
