"""Readers for preference, unpaired and prompt-only data in every supported shape, and the errors bad records get."""

from __future__ import annotations

import json

import pytest

from lmstack.data.preferences import read_preferences, read_prompts, read_unpaired
from lmstack.errors import LmstackError
from lmstack.io import read_jsonl

USER = [{"role": "user", "content": "Hi?"}]


def write(tmp_path, records, name="d.jsonl"):
    path = tmp_path / name
    if name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    else:
        path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


def test_trl_strings_messages_and_implicit_prompt(tmp_path):
    system = [{"role": "system", "content": "Be kind."}, *USER]
    path = write(tmp_path, [
        {"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away.", "kind": "rude", "lang": "en"},
        {"prompt": system, "chosen": [{"role": "assistant", "content": "Hello!"}],
         "rejected": [{"role": "assistant", "content": "No."}]},
        {"chosen": [*USER, {"role": "assistant", "content": "A"}], "rejected": [*USER, {"role": "assistant",
                                                                                        "content": "B"}]},
    ])
    a, b, c = read_preferences(path, "trl")
    assert (a.prompt, a.chosen, a.rejected, a.meta) == (USER, "Hello!", "Go away.", {"kind": "rude", "lang": "en"})
    assert a.where == f"{path}:1" and c.where == f"{path}:3"
    assert (b.prompt, b.chosen, b.rejected, b.meta) == (system, "Hello!", "No.", {})
    assert (c.prompt, c.chosen, c.rejected) == (USER, "A", "B")
    assert read_preferences(path) == [a, b, c]  # auto detects the same


def test_sharegpt_llamafactory_shape_with_system(tmp_path):
    path = write(tmp_path, [{"system": "S", "conversations": [
        {"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1"}, {"from": "human", "value": "q2"}],
        "chosen": {"from": "gpt", "value": "good"}, "rejected": {"from": "gpt", "value": "bad"}, "id": 7}],
        name="d.json")
    (p,) = read_preferences(path)
    assert p.prompt == [{"role": "system", "content": "S"}, {"role": "user", "content": "q1"},
                        {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"}]
    assert (p.chosen, p.rejected, p.meta, p.where) == ("good", "bad", {"id": 7}, f"{path}[0]")


def test_hh_rlhf_splits_the_shared_turns_merges_repeated_speakers_and_skips_cut_transcripts(tmp_path):
    shared = "\n\nHuman: What is 2+2?\n\nAssistant: Why?\n\nHuman: Just tell me."
    path = write(tmp_path, [
        {"chosen": shared + "\n\nAssistant:  It is 4.", "rejected": shared + "\n\nAssistant: Figure it out."},
        # the public files' quirk: one speaker twice in a row (here in the chosen answer only)
        {"chosen": shared + "\n\nAssistant: Four.\n\nAssistant: 4.", "rejected": shared + "\n\nAssistant: 5."},
        {"chosen": shared + "\n\nAssistant: ", "rejected": shared + "\n\nAssistant: 4"},  # cut before its answer
    ])
    skipped = []
    a, b = read_preferences(path, skipped=skipped)
    assert a.prompt == [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "Why?"},
                        {"role": "user", "content": "Just tell me."}]
    assert (a.chosen, a.rejected) == ("It is 4.", "Figure it out.")
    assert b.prompt == a.prompt and (b.chosen, b.rejected) == ("Four.\n\n4.", "5.")
    assert skipped == [f"{path}:3: the chosen transcript ends with an empty assistant turn"]
    assert read_preferences(path, "hh-rlhf") == [a, b]
    assert [r.prompt for r in read_prompts(path)] == [a.prompt] * 3  # the cut transcript still has its prompt
    bad = write(tmp_path, [{"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: c\n\nAssistant: d"}],
                "bad.jsonl")
    with pytest.raises(LmstackError, match=r"bad.jsonl:1: chosen \(2 turns\) and rejected \(2 turns\) differ before"):
        read_preferences(bad)


def test_openai_preference_fine_tuning_jsonl(tmp_path):
    path = write(tmp_path, [{"input": {"messages": USER, "tools": []},
                             "preferred_output": [{"role": "assistant", "content": "Hello!"}],
                             "non_preferred_output": [{"role": "assistant", "content": "Meh."}], "lang": "en"}])
    (p,) = read_preferences(path)
    assert (p.prompt, p.chosen, p.rejected, p.meta) == (USER, "Hello!", "Meh.", {"lang": "en"})
    assert read_preferences(path, "openai") == [p]
    assert [r.prompt for r in read_prompts(path)] == [USER]


def test_unpaired_records_and_paired_files_read_as_unpaired(tmp_path):
    unpaired = write(tmp_path, [{"prompt": "Hi?", "completion": "Hello!", "label": True, "lang": "en"},
                                {"prompt": USER, "completion": [{"role": "assistant", "content": "No."}],
                                 "label": False}], "u.jsonl")
    u = read_unpaired(unpaired)
    assert [(x.prompt, x.completion, x.label, x.meta) for x in u] == [(USER, "Hello!", True, {"lang": "en"}),
                                                                      (USER, "No.", False, {})]
    paired = write(tmp_path, [{"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away.", "kind": "rude"}])
    halves = read_unpaired(paired)
    assert [(x.completion, x.label, x.where, x.meta) for x in halves] == [
        ("Hello!", True, f"{paired}:1", {"kind": "rude"}), ("Go away.", False, f"{paired}:1", {"kind": "rude"})]
    with pytest.raises(LmstackError, match=r"u.jsonl:1: an unpaired record \(prompt, completion, label\)"):
        read_preferences(unpaired)  # unpaired data is not pairs
    write(tmp_path, [{"prompt": "Hi?", "completion": "Hello!", "label": "yes"}], "u.jsonl")
    with pytest.raises(LmstackError, match=r"u.jsonl:1: 'label' must be true or false, got 'yes'"):
        read_unpaired(unpaired)


def test_prompt_files_keep_every_other_field_as_meta(tmp_path):
    path = write(tmp_path, [{"prompt": "What is 2 + 3?", "answer": "5", "lang": "en"},
                            {"messages": [{"role": "system", "content": "S"}, *USER], "kind": "x"},
                            {"prompt": "Hi?", "chosen": "a", "rejected": "b", "lang": "zh"}])
    a, b, c = read_prompts(path)
    assert (a.prompt, a.meta, a.where) == ([{"role": "user", "content": "What is 2 + 3?"}],
                                           {"answer": "5", "lang": "en"}, f"{path}:1")
    assert (b.prompt, b.meta) == ([{"role": "system", "content": "S"}, *USER], {"kind": "x"})
    assert (c.prompt, c.meta) == (USER, {"lang": "zh"})
    write(tmp_path, [{"messages": [*USER, {"role": "assistant", "content": "a"}]}])
    with pytest.raises(LmstackError, match=r"d.jsonl:1: the prompt must end with a user turn \(its last turn is 'as"):
        read_prompts(path)


@pytest.mark.parametrize("record, needle", [
    ({"prompt": "Hi?", "chosen": "a"}, r"the record has no 'rejected' answer"),
    ({"prompt": "Hi?", "rejected": "a"}, r"the record has no 'chosen' answer"),
    ({"conversations": [{"from": "human", "value": "q"}], "rejected": {"from": "gpt", "value": "b"}},
     r"the record has no 'chosen' answer \(sharegpt"),
    ({"input": {"messages": USER}, "preferred_output": [{"role": "assistant", "content": "a"}]},
     r"the record has no 'non_preferred_output' answer"),
    ({"chosen": "\n\nHuman: q\n\nAssistant: a"}, r"the record has no 'rejected' transcript"),
    ({"prompt": "Hi?", "chosen": "same", "rejected": "same"}, r"chosen and rejected are the same answer"),
    ({"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: a"},
     r"chosen and rejected are the same answer"),
    ({"prompt": "  ", "chosen": "a", "rejected": "b"}, r"empty prompt: the last user turn has no text"),
    ({"prompt": [], "chosen": "a", "rejected": "b"}, r"empty prompt$"),
    ({"prompt": [*USER, {"role": "assistant", "content": "x"}], "chosen": "a", "rejected": "b"},
     r"the prompt must end with a user turn"),
    ({"prompt": "Hi?", "chosen": "", "rejected": "b"}, r"'chosen' is empty"),
    ({"prompt": "Hi?", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"},
     r"'chosen' must be an assistant message, not 'user'"),
    ({"prompt": [{"role": "robot", "content": "x"}], "chosen": "a", "rejected": "b"}, r"messages\[0\]: unknown role"),
    ({"question": "x", "answer": "y"}, r"cannot tell the format from the fields \['answer', 'question'\]"),
])
def test_bad_records_are_one_line_naming_file_and_line(tmp_path, record, needle):
    good = {"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away."}
    path = write(tmp_path, [good, record])
    with pytest.raises(LmstackError, match=needle) as e:
        read_preferences(path)
    assert str(e.value).startswith(f"{path}:2: ") and "\n" not in str(e.value)


def test_unknown_format_empty_and_missing_files(tmp_path):
    path = write(tmp_path, [{"prompt": "Hi?", "chosen": "a", "rejected": "b"}])
    with pytest.raises(LmstackError, match=r"d.jsonl: unknown preference format 'dpo' \(expected one of auto, trl"):
        read_preferences(path, "dpo")
    with pytest.raises(LmstackError, match=r"d.jsonl:1: sharegpt record needs a list 'conversations'"):
        read_preferences(path, "sharegpt")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(LmstackError, match=r"empty.jsonl: no preference records"):
        read_preferences(tmp_path / "empty.jsonl")
    with pytest.raises(LmstackError, match=r"nope.json: file not found"):
        read_prompts(tmp_path / "nope.json")
    (tmp_path / "obj.json").write_text('{"prompt": "x"}')
    with pytest.raises(LmstackError, match=r"obj.json: expected a JSON list of records"):
        read_prompts(tmp_path / "obj.json")


def test_lone_surrogates_become_replacement_characters(tmp_path):
    """One policy for every reader (lmstack.data.files): a lone surrogate escape becomes U+FFFD."""
    path = tmp_path / "s.jsonl"
    path.write_text('{"prompt": "a \\ud800 b", "chosen": "x\\udfff", "rejected": "y"}\n', encoding="utf-8")
    (_, raw), = read_jsonl(path)
    (p,) = read_preferences(path)
    assert raw["prompt"] == "a \ud800 b"  # lmstack.io.read_jsonl parses only
    assert p.prompt[0]["content"] == "a \ufffd b" and p.chosen == "x\ufffd"


def test_real_hh_rlhf_harmless_base(shared_data):
    path = shared_data / "hh_rlhf_harmless_base" / "test.jsonl"
    skipped = []
    pairs = read_preferences(path, skipped=skipped)
    assert len(pairs) == 2308  # of 2,312 transcripts; the other 4 are cut before the chosen answer
    assert [s.split(": ", 1)[0].rsplit(":", 1)[1] for s in skipped] == ["87", "517", "926", "1104"]
    assert all(p.prompt[0]["role"] == "user" and p.prompt[-1]["role"] == "user" for p in pairs)
    assert all(p.chosen.strip() and p.rejected.strip() and p.chosen != p.rejected for p in pairs)
    assert sum(len(p.prompt) > 1 for p in pairs) == 1649  # multi-turn prompts (2, 4, ... earlier turns)
    assert len(read_prompts(path)) == 2312 and len(read_unpaired(path)) == 2 * 2308


def test_real_llamafactory_dpo_demos(shared_data):
    for lang in ("en", "zh"):
        path = shared_data / "llamafactory_demo" / f"dpo_{lang}_demo.json"
        pairs = read_preferences(path)
        assert len(pairs) == 300 and pairs[5].where == f"{path}[5]"
        assert all(p.prompt[-1]["role"] == "user" and p.chosen != p.rejected for p in pairs)
        assert len(read_prompts(path)) == 300
