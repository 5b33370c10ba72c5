"""``lmstack chat``: talk to a model in the terminal, the reply streamed token by token.

The session keeps the conversation and renders it through the model's chat template each turn. Commands:
``/reset`` (forget the conversation), ``/history`` (print it), ``/temp 0.7`` (sampling temperature; 0 is
greedy), ``/system TEXT`` (replace the system prompt), ``/exit``. With ``--tools`` the model may call the
calculator (and, with ``--docs``, search), and the results are fed back until it answers.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO
from collections.abc import Callable, Iterable, Iterator

from lmstack.chat.tools import Tool, calculator, open_index, search, tool_loop
from lmstack.devices import resolve_device
from lmstack.errors import LmstackError
from lmstack.generate.config import GenerationConfig
from lmstack.generate.loading import DecodingDtype, load_for_decoding
from lmstack.serve.engine import Engine, Request
from lmstack.text.chat import ChatFormat
from lmstack.text.tool_stream import reply_reader

HELP = "commands: /reset, /history, /temp T, /system TEXT, /exit"


class ChatSession:
    """A conversation with a model served by an in-process ``Engine``."""

    def __init__(self, engine: Engine, system: str | None = None, tools: Iterable[Tool] = (),
                 temperature: float = 0.7, max_tokens: int = 256):
        self.engine, self.system, self.tools = engine, system, list(tools)
        self.chat = ChatFormat(engine.tokenizer)
        self.temperature, self.max_tokens = temperature, max_tokens
        self.history: list[dict] = []

    def messages(self) -> list[dict]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + self.history

    def reset(self) -> None:
        self.history = []

    def say(self, text: str, on_text: Callable[[str], None],
            on_message: Callable[[dict], None] | None = None) -> list[dict]:
        """Send a user message; stream the replies' text to ``on_text`` and give each message added (replies,
        tool results) to ``on_message``; return the messages added."""
        user = {"role": "user", "content": text}
        added = tool_loop(lambda messages: self.reply(messages, on_text), self.messages() + [user], self.tools,
                          on_message=on_message)
        self.history += [user, *added]
        return added

    def reply(self, messages: list[dict], on_text: Callable[[str], None]) -> dict:
        """One assistant message for ``messages``: its content streamed to ``on_text`` as it comes, its tool
        calls read out of the reply (and not shown)."""
        schemas = [t.schema() for t in self.tools] or None
        prompt = self.chat.encode(messages, schemas)
        room = self.engine.max_len - len(prompt)
        if room <= 0:
            raise LmstackError(f"the conversation is {len(prompt)} tokens, the context {self.engine.max_len}; /reset")
        sample = self.temperature > 0
        config = GenerationConfig(max_new_tokens=min(self.max_tokens, room), do_sample=sample,
                                  temperature=self.temperature if sample else 1.0)
        reader, content, calls = reply_reader(bool(self.tools)), "", []
        for event in self.engine.stream(Request(prompt, config, on_text, self.chat.end_ids)):
            if event.error:
                raise LmstackError(f"generation failed: {event.error}")
            piece, made = reader.push(event.text)
            if event.finish:
                rest, more = reader.finish()
                piece, made = piece + rest, made + more
            on_text(piece)
            content, calls = content + piece, calls + made
        return {"role": "assistant", "content": content, **({"tool_calls": calls} if calls else {})}


def repl(session: ChatSession, lines: Iterable[str], out: TextIO) -> int:
    """Run the conversation over input ``lines`` (commands or messages); returns the number of turns."""
    turns = 0
    for line in lines:
        line = line.strip()
        if not line:
            continue
        command, _, arg = line.partition(" ")
        if command == "/exit":
            break
        if command == "/reset":
            session.reset()
            print("(conversation cleared)", file=out)
        elif command == "/history":
            for m in session.messages():
                print(f"{m['role']}: {m.get('content') or ''}{_calls(m)}", file=out)
        elif command == "/temp":
            try:
                temperature = float(arg)
            except ValueError:
                temperature = -1.0
            if temperature >= 0:
                session.temperature = temperature
            print(f"(temperature {session.temperature})" if temperature >= 0
                  else "usage: /temp T with T >= 0 (0: greedy)", file=out)
        elif command == "/system":
            session.system = arg or None
            print("(system prompt set)" if arg else "(system prompt removed)", file=out)
        elif command.startswith("/"):
            print(HELP, file=out)
        else:
            print("assistant> ", end="", file=out, flush=True)
            try:
                session.say(line, lambda piece: print(piece, end="", file=out, flush=True),
                            lambda m: print(_shown(m), end="", file=out, flush=True))
            except LmstackError as e:
                print(f"\n(error: {e})", file=out)
                continue
            print(file=out)
            turns += 1
    return turns


def _shown(message: dict) -> str:
    """What the terminal prints of a message once added (its text was streamed): tool calls and results."""
    if message["role"] == "tool":
        return f"\n[tool] {message['content']}\nassistant> "
    return _calls(message).strip()


def _calls(message: dict) -> str:
    return "".join(f" [{c['function']['name']}({c['function']['arguments']})]" for c in message.get("tool_calls") or [])


def _typed(prompt: str) -> Iterator[str]:
    while True:
        try:
            yield input(prompt)
        except EOFError:
            return


def chat(*, model: Path, adapter: Path | None = None, system: str | None = None, tools: bool = False,
         docs: Path | None = None, temperature: float = 0.7, max_tokens: int = 256, device: str = "auto",
         dtype: DecodingDtype = "auto") -> dict:
    """Chat with a model in the terminal (/reset, /history, /temp T, /system TEXT, /exit).

    Args:
        model: model directory (config.json, model.safetensors, tokenizer.json)
        adapter: adapter directory to apply on top of the model
        system: the system prompt
        tools: let the model call the calculator (and search, with --docs)
        docs: a retrieval index folder, or a folder of .txt/.md files, for the search tool
        temperature: sampling temperature (0: greedy)
        max_tokens: the most tokens per reply
        device: cpu, cuda, or auto
        dtype: weights dtype: auto = bfloat16 where bf16 is native and the model's weights exceed 64 MB, else float32
    """
    net, tokenizer = load_for_decoding(model, adapter, resolve_device(device), dtype)
    kit = ([calculator()] + ([search(open_index(docs))] if docs else [])) if tools else []
    engine = Engine(net, tokenizer, slots=1, max_queue=1).start()
    session = ChatSession(engine, system, kit, temperature, max_tokens)
    print(HELP, file=sys.stderr)
    try:
        turns = repl(session, _typed("you> "), sys.stdout)
    finally:
        engine.stop()
    return {"turns": turns, "messages": len(session.history)}
