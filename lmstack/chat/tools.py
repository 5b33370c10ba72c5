"""Tools a chat model may call: a safe calculator, a search over documents, and the loop that runs them.

A tool is an OpenAI-style function spec (name, description, JSON-schema parameters) plus the Python function
that answers it with text. ``tool_loop`` alternates model replies and tool results (``tool`` messages) until
the model answers without calling a tool, or the step limit is reached.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lmstack.errors import LmstackError
from lmstack.retrieval.index import Retriever
from lmstack.tools.calculator import calculate, format_number
from lmstack.tools.specs import CALCULATOR_SPEC, SEARCH_SPEC


@dataclass(frozen=True)
class Tool:
    spec: dict
    fn: Callable[..., str]

    @property
    def name(self) -> str:
        return self.spec["name"]

    def schema(self) -> dict:
        """The entry for a request's ``tools`` list."""
        return {"type": "function", "function": self.spec}


def calculator() -> Tool:
    def run(expression: str) -> str:
        return format_number(calculate(expression))
    return Tool(CALCULATOR_SPEC, run)


# ---------------------------------------------------------------------------------------------- search

class FolderIndex:
    """A fallback index over a folder's .txt/.md files: paragraphs scored by the idf of shared terms
    (words, and character bigrams for Chinese). ``search``/``text`` as ``lmstack.retrieval``'s Retriever."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        files = sorted(p for p in folder.rglob("*") if p.suffix in (".txt", ".md") and p.is_file())
        if not files:
            raise LmstackError(f"{folder}: no .txt or .md files to search")
        self.passages: dict[str, str] = {}
        for path in files:
            paragraphs = [p.strip() for p in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")) if p.strip()]
            for i, text in enumerate(paragraphs):
                self.passages[f"{path.relative_to(folder)}#{i}"] = text
        self.terms = {pid: set(terms(text)) for pid, text in self.passages.items()}
        df = Counter(t for ts in self.terms.values() for t in ts)
        self.idf = {t: math.log(1 + len(self.passages) / n) for t, n in df.items()}

    def search(self, query: str, k: int = 3) -> list[tuple[str, float]]:
        wanted = set(terms(query))
        scores = {pid: sum(self.idf[t] for t in wanted & ts) for pid, ts in self.terms.items()}
        ranked = sorted((s, pid) for pid, s in scores.items() if s > 0)
        return [(pid, s) for s, pid in sorted(ranked, key=lambda x: -x[0])[:k]]

    def text(self, passage_id: str) -> str:
        return self.passages[passage_id]


def terms(text: str) -> list[str]:
    """Lower-cased words, and each run of Chinese characters as its characters and bigrams."""
    out = []
    for run in re.findall(r"[\u4e00-\u9fff]+|[^\W_]+", text.lower()):
        if "\u4e00" <= run[0] <= "\u9fff":
            out += list(run) + [run[i:i + 2] for i in range(len(run) - 1)]
        else:
            out.append(run)
    return out


def open_index(path: str | Path):
    """A retrieval index folder (``lmstack index``) as a Retriever, or any folder of .txt/.md files."""
    path = Path(path)
    if (path / "manifest.json").is_file():
        return Retriever.load(path)
    return FolderIndex(path)


def search(index, k: int = 3) -> Tool:
    """The search tool over ``index`` (anything with ``search(query, k)`` and ``text(id)``)."""
    def run(query: str) -> str:
        hits = index.search(query, k)
        return "\n".join(f"{i}. {index.text(pid)}" for i, (pid, _) in enumerate(hits, 1)) or "no results"
    return Tool(SEARCH_SPEC, run)


# ---------------------------------------------------------------------------------------------- the loop

def run_tool(call: dict, tools: dict[str, Tool]) -> str:
    """Answer one OpenAI-shaped tool call; a bad call gets an error text the model can read, not an exception."""
    function = call.get("function", call)
    tool = tools.get(function.get("name"))
    if tool is None:
        return f"error: no tool named {function.get('name')!r} (tools: {', '.join(tools)})"
    try:
        args = function.get("arguments") or {}
        args = json.loads(args) if isinstance(args, str) else args
        if not isinstance(args, dict):
            raise TypeError("arguments must be a JSON object")
        return tool.fn(**args)
    except (LmstackError, TypeError, ValueError) as e:
        return f"error: {e}"


def tool_loop(reply: Callable[[list[dict]], dict], messages: list[dict], tools: list[Tool],
              max_steps: int = 4, on_message: Callable[[dict], None] | None = None) -> list[dict]:
    """Extend ``messages`` with model replies and tool results until a reply calls no tool.

    ``reply(messages)`` returns an assistant message (``content``, optional OpenAI ``tool_calls``). After
    ``max_steps`` replies the loop stops, the conversation then ending with tool results. Returns the
    messages added, each also given to ``on_message`` as it is added.
    """
    by_name, added = {t.name: t for t in tools}, []

    def add(message: dict) -> None:
        added.append(message)
        if on_message is not None:
            on_message(message)

    for step in range(max_steps):
        message = reply(messages + added)
        add(message)
        if not message.get("tool_calls"):
            break
        for i, call in enumerate(message["tool_calls"]):
            call_id = call.get("id") or f"call_{step}_{i}"
            add({"role": "tool", "tool_call_id": call_id, "content": run_tool(call, by_name)})
    return added
