"""A tiny model directory and a real ``lmstack serve`` process on a free port, shared by the server tests.

The served model is a *tape*: a bigram model (its blocks are identities) whose learned position embeddings
take over at the positions where the tool-use prompt's reply goes, writing a scripted tool call there; so
the tool-calling path is tested end to end without training anything.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest
import torch
import uvicorn

from lmstack.tools.specs import CALCULATOR_SPEC
from lmstack.model import Transformer, build_model, preset
from lmstack.model.hf import save_model
from lmstack.text.chat import ChatFormat
from lmstack.serve.app import Settings, create_app
from lmstack.serve.engine import Engine
from lmstack.text.tokenizer import IM_END, Tokenizer, train_bpe

TEXT = ["The river town of Kell trades salt and amber. 凯尔河镇以盐和琥珀贸易为生。", "hello world, 你好，世界！",
        '<tool_call>{"name": "calculator", "arguments": {"expression": "2 + 2"}}</tool_call>'] * 20
API_KEY = "test-key"
CONTEXT = 1024
TOOLS = [{"type": "function", "function": CALCULATOR_SPEC}]
TOOL_MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]
TOOL_REPLY = '<tool_call>{"name": "calculator", "arguments": {"expression": "2 + 2"}}</tool_call>'
SERVER = "from lmstack.cli import main; main()"


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    return train_bpe(TEXT, vocab_size=400)


def random_model(vocab_size: int, seed: int = 0, name: str = "gpt2-tiny") -> Transformer:
    """Random weights scaled up, so next-token distributions are peaked and varied."""
    torch.manual_seed(seed)
    model = build_model(preset(name, vocab_size=vocab_size, block_size=CONTEXT)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(4)
    return model


def tape_model(tokenizer: Tokenizer) -> Transformer:
    """A bigram model that writes TOOL_REPLY + <|im_end|> as the reply to TOOL_MESSAGES with TOOLS."""
    torch.manual_seed(0)
    model = build_model(preset("gpt2-tiny", vocab_size=tokenizer.vocab_size, block_size=CONTEXT,
                               tie_embeddings=False)).eval()
    start = len(ChatFormat(tokenizer).encode(TOOL_MESSAGES, TOOLS))
    tape = tokenizer.encode(TOOL_REPLY) + [tokenizer.token_to_id(IM_END)]
    with torch.no_grad():
        for block in model.blocks:
            block.attn.proj.weight.zero_()
            block.mlp.proj.weight.zero_()
        model.pos_emb.weight.zero_()
        model.tok_emb.weight.normal_(0, 1)
        model.lm_head.weight.normal_(0, 0.3)
        for k, token in enumerate(tape):  # position start+k-1 predicts the k-th tape token
            model.pos_emb.weight[start + k - 1, k] = 50.0
            model.lm_head.weight[token, k] = 5.0
    return model


@pytest.fixture(scope="session")
def model_dir(tokenizer, tmp_path_factory) -> Path:
    return save_model(tape_model(tokenizer), tmp_path_factory.mktemp("served") / "tiny", tokenizer=tokenizer)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """``lmstack serve`` in a subprocess (one torch thread); returns it and its base URL once healthy."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LMSTACK_API_KEY": ""}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, "serve", "--model", str(model_dir), "--port", str(port),
                             "--log-level", "warning", "--device", "cpu", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stdout.read()}")
        try:
            if httpx2.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx2.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def server(model_dir):
    """Base URL of a server with an API key, 4 slots, 2 waiting places and max_tokens capped at 200."""
    proc, url = start_server(model_dir, "--name", "tiny", "--api-key", API_KEY, "--slots", "4", "--max-queue", "2",
                             "--max-tokens", "200", "--max-body", "100000")
    yield url
    stop_server(proc)
    assert proc.returncode in (0, -15), proc.stdout.read()


@contextmanager
def live_app(model, tokenizer: Tokenizer, slots: int = 4, **settings) -> Iterator[str]:
    """The app over ``model`` served by uvicorn in a thread of this process (real HTTP, no subprocess); yields
    its base URL. ``settings`` are ``Settings`` fields (the model is named "tiny")."""
    engine = Engine(model, tokenizer, slots=slots).start()
    app = create_app(engine, Settings(model_name="tiny", **settings))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.stop()


@pytest.fixture(scope="module")
def live(tokenizer) -> Iterator[str]:
    """Base URL of an in-process server over the tape model (no API key, 4 slots, unknown fields ignored)."""
    with live_app(tape_model(tokenizer), tokenizer) as url:
        yield url
