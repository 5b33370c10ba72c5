"""A chat model's directory ends replies at the turn's end in ``transformers`` too: generation_config.json lists
eos and every turn-end id of the chat template (as Qwen's chat models do)."""

from __future__ import annotations

import json

import openai
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmstack.serve.loading import generation_end_ids
from lmstack.text.chat import ChatFormat
from lmstack.text.tokenizer import IM_END

from .conftest import TOOL_MESSAGES, TOOL_REPLY, TOOLS, live_app, tape_model


def test_generation_config_stops_transformers_at_the_turn_end(model_dir, tokenizer):
    config = json.loads((model_dir / "generation_config.json").read_text())
    assert config["eos_token_id"] == [tokenizer.eos_id, tokenizer.token_to_id(IM_END)]
    assert set(config["eos_token_id"]) == ChatFormat(tokenizer).end_ids
    assert json.loads((model_dir / "config.json").read_text())["eos_token_id"] == tokenizer.eos_id
    hf_tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = hf_tokenizer.apply_chat_template(TOOL_MESSAGES, tools=TOOLS, add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)["input_ids"]
    assert ids[0].tolist() == ChatFormat(tokenizer).encode(TOOL_MESSAGES, TOOLS)
    with torch.no_grad():  # the tape model writes TOOL_REPLY, <|im_end|>, then (were it not stopped) more text
        out = model.generate(ids, max_new_tokens=60, do_sample=False)
    new = out[0, ids.size(1):].tolist()
    assert new[-1] == tokenizer.token_to_id(IM_END)
    assert hf_tokenizer.decode(new, skip_special_tokens=True) == TOOL_REPLY  # no trailing newline or next turn


def test_plain_completions_stop_where_generation_config_says(model_dir, tokenizer):
    """``serve`` reads generation_config.json's eos ids, so a completion of the chat prompt ends at <|im_end|> as
    transformers' does (the text leaves it out); without them it runs on past the turn's end."""
    ends = generation_end_ids(model_dir)
    assert ends == [tokenizer.eos_id, tokenizer.token_to_id(IM_END)]
    prompt = ChatFormat(tokenizer).encode(TOOL_MESSAGES, TOOLS)
    body = {"model": "tiny", "prompt": prompt, "max_tokens": 60, "temperature": 0}
    with live_app(tape_model(tokenizer), tokenizer, end_ids=ends) as url:
        choice = openai.OpenAI(base_url=url + "/v1", api_key="-").completions.create(**body).choices[0]
    assert (choice.text, choice.finish_reason) == (TOOL_REPLY, "stop")
    with live_app(tape_model(tokenizer), tokenizer) as url:
        choice = openai.OpenAI(base_url=url + "/v1", api_key="-").completions.create(**body).choices[0]
    assert choice.text.startswith(TOOL_REPLY) and choice.text != TOOL_REPLY
