"""The synthetic world's attribute-labelled texts and neutral prompts (steering data)."""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import pytest

from lmstack.data.attribute_texts import known_codes, read_attribute_texts
from lmstack.data.synth import DATASETS, build_world, synth
from lmstack.data.synth.attributes import ATTRIBUTES, MANNERS, VERDICTS
from lmstack.errors import LmstackError

HAN = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_attributes")
    synth(root, seed=0, scale=0.05)
    return root


def lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def make(name, seed=0, scale=1.0):
    return DATASETS[name](build_world(seed), random.Random(f"{seed}:dataset:{name}"), scale)


def test_sizes_at_scale_one_and_the_smallest_scale():
    assert {s: len(r) for s, r in make("attributes").items()} == {"train": 3000, "test": 360}
    assert {s: len(r) for s, r in make("attributes", scale=0.001).items()} == {"train": 180, "test": 60}
    assert {s: len(r) for s, r in make("steer_prompts").items()} == {"test": 40}


def test_files_are_written_deterministically_with_disjoint_unique_splits(out, tmp_path):
    synth(tmp_path / "again", seed=0, scale=0.05)
    for file in ("attributes_train.jsonl", "attributes_test.jsonl", "steer_prompts_test.jsonl"):
        assert (out / file).read_bytes() == (tmp_path / "again" / file).read_bytes(), file
    train, test = (lines(out / f"attributes_{s}.jsonl") for s in ("train", "test"))
    texts = [r["text"] for r in train], [r["text"] for r in test]
    assert len(set(texts[0])) == len(texts[0]) and len(set(texts[1])) == len(texts[1])
    assert not set(texts[0]) & set(texts[1])
    assert all(set(r) == {"text", "lang", "attribute", "label"} for r in train + test)


def test_every_attribute_and_label_in_both_languages_and_splits():
    data = make("attributes")
    for split in ("train", "test"):
        pairs = Counter((r["attribute"], r["label"], r["lang"]) for r in data[split])
        assert set(pairs) == {(a, lab, lang) for a, labels in ATTRIBUTES.items() for lab in labels
                              for lang in ("en", "zh")}
    for r in data["train"]:
        assert bool(HAN.search(r["text"])) == (r["lang"] == "zh"), r


def test_labels_match_their_texts():
    """A review carries verdicts of its own sentiment only; a reply opens and closes with its own manners."""
    for r in make("attributes")["train"]:
        if r["attribute"] == "sentiment":
            other = "negative" if r["label"] == "positive" else "positive"
            own = [v for s in VERDICTS.values() for v in s[r["label"]][r["lang"]] if v in r["text"]]
            assert len(own) == 2 and not [v for s in VERDICTS.values() for v in s[other][r["lang"]]
                                          if v in r["text"]], r
        elif r["attribute"] == "politeness":
            openers, closers = MANNERS[r["label"]][r["lang"]]
            assert r["text"].startswith(openers) and r["text"].endswith(closers), r


def test_neutral_prompts_hold_no_verdict_and_alternate_languages(out):
    prompts = lines(out / "steer_prompts_test.jsonl")
    verdicts = [v for s in VERDICTS.values() for by_label in s.values() for vs in by_label.values() for v in vs]
    assert len({p["prompt"] for p in prompts}) == len(prompts) >= 10
    assert [p["lang"] for p in prompts[:4]] == ["en", "zh", "en", "zh"]
    assert not any(v in p["prompt"] for p in prompts for v in verdicts)


def test_reader_filters_by_attribute_and_names_a_bad_line(out, tmp_path):
    rows = read_attribute_texts(out / "attributes_train.jsonl", "sentiment")
    assert rows and {r.attribute for r in rows} == {"sentiment"}
    assert known_codes(rows) == {"sentiment": ["negative", "positive"]}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok", "lang": "en", "attribute": "topic", "label": "food"}\n{"text": "no label"}\n')
    with pytest.raises(LmstackError, match=r"bad\.jsonl:2: expected"):
        read_attribute_texts(bad)
