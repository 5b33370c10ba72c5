"""How often a tuned model calls the right tool with the right arguments, on the synthetic tools_test split.

Each test conversation is cut before its first assistant turn; the model answers greedily (all prompts
decoded together by the serving engine) and its reply is parsed for tool calls. A reply is right when:

* calculator: it calls ``calculator`` with an expression of the same value as the reference one
* search: it calls ``search`` with a query naming the person or place asked about
* direct: it calls no tool

    python bench/tool_calls.py --model runs/tools/model --data runs/synth/tools_test.jsonl --json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from lmstack.tools.calculator import calculate
from lmstack.cli import emit
from lmstack.errors import LmstackError
from lmstack.generate.config import GenerationConfig
from lmstack.serve.engine import Engine, Request
from lmstack.generate.loading import load_for_decoding
from lmstack.text.chat import ChatFormat
from lmstack.text.tool_stream import parse_tool_calls


def judge(record: dict, reply: str) -> tuple[bool, bool]:
    """(right tool or rightly none, right arguments too) for one reply."""
    _, calls = parse_tool_calls(reply)
    if record["kind"] == "direct":
        return not calls, not calls
    wanted = record["kind"]
    if len(calls) != 1 or calls[0]["function"]["name"] != wanted:
        return False, False
    try:
        args = json.loads(calls[0]["function"]["arguments"])
    except json.JSONDecodeError:
        return True, False
    if not isinstance(args, dict):
        return True, False
    if wanted == "calculator":
        reference = json.loads(record["messages"][1]["tool_calls"][0]["function"]["arguments"])["expression"]
        try:
            return True, math.isclose(calculate(str(args.get("expression", ""))), calculate(reference))
        except LmstackError:
            return True, False
    return True, record["entity"] in str(args.get("query", ""))


def run(model_dir: Path, data: Path, limit: int | None, slots: int) -> dict:
    model, tokenizer = load_for_decoding(model_dir)
    chat = ChatFormat(tokenizer)
    records = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line.strip()][:limit]
    engine = Engine(model, tokenizer, slots=slots, max_queue=len(records)).start()
    replies: dict[int, str] = defaultdict(str)
    done = []
    start = time.perf_counter()
    try:
        for i, record in enumerate(records):
            head = record["messages"][:next(k for k, m in enumerate(record["messages"]) if m["role"] == "assistant")]
            prompt = chat.encode(head, record["tools"])
            budget = min(64, engine.max_len - len(prompt))
            if budget <= 0:
                raise LmstackError(f"test conversation {i} is {len(prompt)} tokens, beyond the model's context")
            emit = lambda e, i=i: (replies.__setitem__(i, replies[i] + e.text), e.finish and done.append(i))  # noqa: E731
            engine.submit(Request(prompt, GenerationConfig(max_new_tokens=budget), emit, chat.end_ids))
        while len(done) < len(records):
            time.sleep(0.05)
    finally:
        engine.stop()
    groups: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for i, record in enumerate(records):
        verdict = judge(record, replies[i])
        for key in ("all", record["kind"], f"{record['kind']}/{record['lang']}"):
            groups[key].append(verdict)
    return {
        "model": str(model_dir), "conversations": len(records), "seconds": round(time.perf_counter() - start, 1),
        **{f"right_tool/{k}": round(sum(t for t, _ in v) / len(v), 3) for k, v in sorted(groups.items())},
        **{f"right_call/{k}": round(sum(a for _, a in v) / len(v), 3) for k, v in sorted(groups.items())},
        "examples": [{"question": records[i]["messages"][0]["content"], "reply": replies[i]} for i in range(3)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="tuned model directory")
    parser.add_argument("--data", type=Path, default=Path("runs/synth/tools_test.jsonl"))
    parser.add_argument("--limit", type=int, default=None, help="only the first N conversations")
    parser.add_argument("--slots", type=int, default=16, help="conversations decoded together")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    torch.set_num_threads(min(4, torch.get_num_threads()))
    try:
        result = run(args.model, args.data, args.limit, args.slots)
    except LmstackError as e:
        sys.exit(f"tool_calls: error: {e}")
    emit(result, args.json)


if __name__ == "__main__":
    main()
