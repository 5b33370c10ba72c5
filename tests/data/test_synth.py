import json
import re
from collections import Counter

import pytest

from lmstack.cli import main
from lmstack.data.synth import SECTIONS, build_world, doc, generate_documents, section, synth
from lmstack.errors import LmstackError

EQUATION = re.compile(r"(\d+(?: [-+×] \d+)+) = (\d+)")


def test_same_seed_gives_byte_identical_files(tmp_path):
    a, b, c = (synth(tmp_path / name, seed=seed, scale=0.05) for name, seed in (("a", 3), ("b", 3), ("c", 4)))
    for name in ("pretrain.jsonl", "world.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
    assert a["documents"] == b["documents"] > 0


def test_records_cover_every_kind_in_both_languages(corpus):
    assert all(list(r) == ["text", "kind", "lang"] and r["text"] for r in corpus)
    pairs = Counter((r["kind"], r["lang"]) for r in corpus)
    for kind in ("facts", "story", "arithmetic", "qa", "instruction", "dialogue", "menu"):
        assert pairs[kind, "en"] > 0 and pairs[kind, "zh"] > 0, kind
    assert any(re.search(r"[\u4e00-\u9fff]", r["text"]) for r in corpus if r["lang"] == "zh")


def test_facts_come_in_parallel_english_chinese_pairs():
    records = [r for r in generate_documents(seed=1, scale=0.05) if r["kind"] == "facts"]
    en = [r for r in records if r["lang"] == "en"]
    zh = [r for r in records if r["lang"] == "zh"]
    assert len(en) == len(zh)
    world = build_world(1)
    for e, z in zip(en, zh):  # the same people, in the same order, in both renderings
        named_en = [p.first.en for p in world.people if p.name("en") in e["text"]]
        named_zh = [p.first.en for p in world.people if p.name("zh") in z["text"]]
        assert named_en == named_zh


def test_answers_agree_with_world_json(tmp_path):
    synth(tmp_path, seed=2, scale=0.1)
    world = json.loads((tmp_path / "world.json").read_text(encoding="utf-8"))
    homes = {p["name"]["en"]: p["home"]["en"] for p in world["people"]}
    checked = 0
    for line in (tmp_path / "pretrain.jsonl").read_text(encoding="utf-8").splitlines():
        m = re.fullmatch(r"Question: Where does (.+) live\?\nAnswer: (.+) lives in (.+)\.", json.loads(line)["text"])
        if m:
            assert m[1] == m[2] and homes[m[1]] == m[3]
            checked += 1
    assert checked > 5


def test_every_equation_in_the_corpus_is_true(corpus):
    equations = [m for r in corpus for m in EQUATION.finditer(r["text"])]
    assert len(equations) > 100
    for m in equations:
        assert eval(m[1].replace("×", "*")) == int(m[2]), m[0]


def test_worked_addition_example():
    from lmstack.data.synth.arithmetic import add

    assert add(23, 48, "en") == ("What is 23 + 48?\nFirst add the ones: 3 + 8 = 11. Write 1 and carry 1. "
                                 "Then add the tens: 2 + 4 + 1 = 7. So 23 + 48 = 71.")


def test_scale_one_is_a_few_megabytes_and_scale_shrinks_it():
    full = sum(len(r["text"].encode("utf-8")) for r in generate_documents(seed=0, scale=1.0))
    tenth = sum(len(r["text"].encode("utf-8")) for r in generate_documents(seed=0, scale=0.1))
    assert 2_000_000 < full < 4_000_000
    assert 0.07 < tenth / full < 0.13


def test_a_new_section_plugs_in_without_changing_the_others():
    before = list(generate_documents(seed=5, scale=0.05))

    @section("test_echo", docs=40)
    def echo(world, rng):
        while True:
            yield doc(f"{rng.choice(world.people).name('en')} says hello.", "echo", "en")

    try:
        after = list(generate_documents(seed=5, scale=0.05))
    finally:
        del SECTIONS["test_echo"]
    assert sum(r["kind"] == "echo" for r in after) == 2
    for kind in ("facts", "qa", "story"):  # each section draws from its own random stream
        assert [r for r in after if r["kind"] == kind] == [r for r in before if r["kind"] == kind]


def test_duplicate_section_name_is_refused():
    with pytest.raises(ValueError, match="facts"):
        section("facts", docs=1)(lambda world, rng: iter(()))


def test_bad_scale_is_a_clear_error(tmp_path):
    with pytest.raises(LmstackError, match="--scale"):
        synth(tmp_path, scale=0)


def test_cli_prints_json_figures(tmp_path, capsys):
    main(["synth", "--out", str(tmp_path), "--scale", "0.02", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["documents"] == sum(1 for _ in open(tmp_path / "pretrain.jsonl", encoding="utf-8"))
