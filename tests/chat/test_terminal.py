"""``lmstack chat``: commands change the session, replies stream, the history is kept and rendered each turn."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
import torch

from lmstack.chat.terminal import ChatSession, repl
from lmstack.chat.tools import calculator
from lmstack.generate.api import generate
from lmstack.model import build_model, preset
from lmstack.model.hf import save_model
from lmstack.serve.engine import Engine, Event
from lmstack.text.tokenizer import train_bpe

TEXT = ["hello world, 你好，世界！ The river town of Kell trades salt and amber."] * 20


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    tokenizer = train_bpe(TEXT, vocab_size=320)
    model = build_model(preset("gpt2-tiny", vocab_size=tokenizer.vocab_size, block_size=512)).eval()
    return model, tokenizer


@pytest.fixture
def engine(parts):
    engine = Engine(*parts, slots=1).start()
    yield engine
    engine.stop()


def test_commands_and_a_streamed_greedy_reply(engine, parts):
    model, tokenizer = parts
    session = ChatSession(engine, system="Be brief.", temperature=0.7, max_tokens=12)
    out = io.StringIO()
    turns = repl(session, ["/temp 0", "hello", "/history", "/temp -1", "/nonsense", "/exit", "never read"], out)
    prompt = tokenizer.apply_chat_template([{"role": "system", "content": "Be brief."},
                                            {"role": "user", "content": "hello"}], add_generation_prompt=True)
    expected = generate(model, tokenizer, prompt, max_new_tokens=12, stop=["<|im_end|>"])
    text = out.getvalue()
    assert turns == 1 and session.temperature == 0
    assert f"assistant> {expected}\n" in text
    assert "system: Be brief.\nuser: hello\nassistant: " in text
    assert "usage: /temp T" in text and "commands: /reset" in text
    assert session.history == [{"role": "user", "content": "hello"}, {"role": "assistant", "content": expected}]


def test_reset_and_system_prompt(engine):
    session = ChatSession(engine, temperature=0, max_tokens=3)
    out = io.StringIO()
    repl(session, ["hi", "again", "/system 你是助手", "/reset"], out)
    assert session.history == [] and session.system == "你是助手"
    assert session.messages() == [{"role": "system", "content": "你是助手"}]


def test_an_overlong_conversation_is_reported_not_raised(engine):
    session = ChatSession(engine, temperature=0, max_tokens=3)
    out = io.StringIO()
    assert repl(session, ["word " * 600], out) == 0
    assert "(error: the conversation is" in out.getvalue() and session.history == []


def test_tools_mode_offers_the_tools_in_the_prompt(engine, parts):
    _, tokenizer = parts
    session = ChatSession(engine, tools=[calculator()], temperature=0, max_tokens=3)
    seen = []
    session.engine = _Recording(engine, seen)
    session.say("what is 2 + 2?", lambda _: None)
    assert '"name": "calculator"' in tokenizer.decode(seen[0])


def test_a_tool_call_is_read_out_of_the_streamed_reply_and_run(parts):
    _, tokenizer = parts
    call = '<tool_call>{"name": "calculator", "arguments": {"expression": "2 + 2"}}</tool_call>'
    script = [["Let me ", "work it out <tool", call[len("<tool"):-3], call[-3:]], ["It is ", "4."]]
    engine = _Scripted(tokenizer, script)
    session = ChatSession(engine, tools=[calculator()], temperature=0, max_tokens=8)
    shown = []
    added = session.say("what is 2 + 2?", shown.append)
    assert "".join(shown) == "Let me work it outIt is 4."  # the call's text is never shown
    assert added == [
        {"role": "assistant", "content": "Let me work it out", "tool_calls": [
            {"type": "function", "function": {"name": "calculator", "arguments": '{"expression": "2 + 2"}'}}]},
        {"role": "tool", "tool_call_id": "call_0_0", "content": "4"},
        {"role": "assistant", "content": "It is 4."}]
    assert all(r.stop_ids == {tokenizer.eos_id, tokenizer.token_to_id("<|im_end|>")} for r in engine.requests)
    out = io.StringIO()
    repl(ChatSession(_Scripted(tokenizer, script), tools=[calculator()], temperature=0), ["2 + 2?"], out)
    assert out.getvalue() == ('assistant> Let me work it out[calculator({"expression": "2 + 2"})]\n[tool] 4\n'
                              "assistant> It is 4.\n")


def test_the_cli_command(tmp_path, parts):
    model, tokenizer = parts
    folder = save_model(model, tmp_path / "m", tokenizer=tokenizer)
    code = "from lmstack.cli import main; main()"
    out = subprocess.run([sys.executable, "-c", code, "chat", "--model", str(folder), "--temperature", "0",
                          "--max-tokens", "4", "--device", "cpu", "--json"], input="hello\n/reset\nhi\n",
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith('{"turns": 2, "messages": 2}')


class _Recording:
    """An engine wrapper that records each prompt."""

    def __init__(self, engine, seen):
        self.engine, self.seen = engine, seen

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def stream(self, request):
        self.seen.append(request.prompt)
        return self.engine.stream(request)


class _Scripted:
    """An engine that answers each request with the next scripted reply, in the given pieces."""

    def __init__(self, tokenizer, replies):
        self.tokenizer, self.max_len, self.replies, self.requests = tokenizer, 512, list(replies), []

    def stream(self, request):
        self.requests.append(request)
        pieces = self.replies.pop(0)
        for k, piece in enumerate(pieces):
            yield Event(text=piece, token=0, finish="stop" if k == len(pieces) - 1 else None)
