"""The CLI: one JSON object on stdout with --json, one error line and a non-zero exit on bad input."""

from __future__ import annotations

import json
import subprocess
import sys


def lmstack(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lmstack", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_help_lists_commands():
    out = lmstack("--help")
    assert out.returncode == 0
    for name in ("synth", "prepare", "train", "generate", "perplexity", "demo"):
        assert name in out.stdout


def test_unknown_command():
    out = lmstack("fly")
    assert out.returncode == 2 and "unknown command 'fly'" in out.stderr


def test_json_is_one_object_on_stdout(tmp_path):
    out = lmstack("synth", "--out", str(tmp_path), "--scale", "0.01", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["documents"] > 0
    assert len(out.stdout.strip().splitlines()) == 1


def test_error_is_one_line_without_traceback(tmp_path):
    out = lmstack("train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--max_iters", "1")
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "missing" in out.stderr


def test_unknown_override_key(tmp_path):
    out = lmstack("train", "--data", str(tmp_path), "--model.n_layers", "2")
    assert out.returncode == 2 and "unknown config key 'n_layers'" in out.stderr


def test_debug_shows_the_traceback(tmp_path):
    out = lmstack("train", "--data", str(tmp_path / "missing"), "--debug")
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_json_keeps_stdout_for_the_result(capsys):
    """Whatever a command prints (streamed text, say) goes to stderr under --json."""
    from lmstack import cli

    def talk() -> dict:
        print("streamed text")
        return {"ok": 1}

    cli.COMMANDS["talk"] = ("x:talk", "")
    try:
        original, cli._resolve = cli._resolve, lambda target: talk
        cli.main(["talk", "--json"])
    finally:
        cli._resolve = original
        del cli.COMMANDS["talk"]
    out = capsys.readouterr()
    assert json.loads(out.out) == {"ok": 1} and "streamed text" in out.err



def test_help_of_a_config_command_lists_every_key_with_its_default():
    out = lmstack("finetune", "--help").stdout
    assert "--lora.targets all-linear" in out and "--method lora" in out and "--max_iters 300" in out


def test_a_prompt_that_is_not_utf8_is_one_line(tmp_path):
    """`lmstack generate MODEL $'\\xff'`: the raw byte reaches Python as a lone surrogate and is refused by name."""
    out = subprocess.run([sys.executable, "-m", "lmstack", "generate", str(tmp_path), b"\xffbad"],
                         capture_output=True, timeout=300)
    err = out.stderr.decode("utf-8", "replace")
    assert out.returncode == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "prompt: the argument is not valid UTF-8 (byte 0xff at character 0)" in err
