"""Analogies: 3CosAdd and 3CosMul against their formulas, the evaluator's counts against gensim's
evaluate_word_analogies on the same vectors, question files with bad lines, and the command's report."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch

from lmstack.errors import LmstackError
from lmstack.interpret.analogies import Question, evaluate, read_questions, scores, solve, write_questions
from lmstack.interpret.vector_commands import inspect_analogies, inspect_projection
from lmstack.interpret.vectors import WordVectors
from lmstack.model import build_model, preset
from lmstack.model.hf import save_model
from lmstack.text.tokenizer import train_bpe


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_3cosadd_and_3cosmul_follow_their_formulas():
    rng = np.random.default_rng(0)
    wv = WordVectors([f"w{i}" for i in range(30)], rng.normal(size=(30, 6)))
    a, b, c = (wv.vector(w) for w in ("w0", "w1", "w2"))
    for x in wv.vectors[:5]:
        cos = lambda u, v: float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))  # noqa: E731
        add = scores(x[None], a, b, c, "3cosadd")[0]
        assert add == pytest.approx(cos(x, b - a + c), rel=1e-5)
        mul = scores(x[None], a, b, c, "3cosmul")[0]
        shifted = [(1 + cos(x, v)) / 2 for v in (a, b, c)]
        assert mul == pytest.approx(shifted[1] * shifted[2] / (shifted[0] + 0.001), rel=1e-5)
    answers = solve(wv, "w0", "w1", "w2", k=27)
    assert {w for w, _ in answers}.isdisjoint({"w0", "w1", "w2"}) and len(answers) == 27


def test_king_man_woman_queen_by_hand():
    # royalty on axis 0, gender on axis 1: king - man + woman = (1, -1) + (0, 1)... lands on queen
    words = ["king", "man", "woman", "queen", "prince", "girl"]
    wv = WordVectors(words, np.array([[1, 1, .1], [0, 1, .1], [0, -1, .1], [1, -1, .1], [.8, .9, .3], [-.1, -1, .4]]))
    assert solve(wv, "man", "king", "woman")[0][0] == "queen"
    assert solve(wv, "man", "king", "woman", method="3cosmul")[0][0] == "queen"
    qs = [Question("royal", ("man", "king", "woman", "queen"), "f:2"),
          Question("royal", ("MAN", "King", "Woman", "QUEEN"), "f:3"),  # case-insensitive
          Question("royal", ("man", "king", "woman", "empress"), "f:4")]  # empress: not covered, no crash
    result = evaluate(wv, qs)
    assert result["sections"]["royal"] == {"questions": 3, "correct": 2, "incorrect": 0, "covered": 2,
                                           "accuracy": 1.0, "coverage": pytest.approx(2 / 3)}
    assert evaluate(wv, qs, restrict_vocab=3)["total"]["covered"] == 0  # queen is outside the first three


def _random_setup(tmp_path, seed):
    """Random vectors for words (some clustered so that analogies are sometimes right, case variants, words
    only in the questions) and a questions-words.txt file over them."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(40)] + ["W3", "W5"]  # case variants after their lower-case forms
    base = rng.normal(size=(len(words), 8)).astype(np.float32)
    base[10:20] = base[0:10] + rng.normal(size=8) + rng.normal(scale=0.3, size=(10, 8))  # a shared offset
    lines = []
    for name, size in (("offset", 25), ("random", 25), ("with-oov", 10)):
        lines.append(f": {name}")
        for _ in range(size):
            if name == "offset":
                i, j = rng.choice(10, 2, replace=False)
                q = [f"w{i}", f"w{i + 10}", f"w{j}", f"w{j + 10}"]
            else:
                q = [f"w{k}" for k in rng.choice(40, 4, replace=False)]
                if name == "with-oov":
                    q[rng.integers(4)] = "unseen"
            lines.append(" ".join(w.upper() if rng.random() < 0.2 else w for w in q))
    path = tmp_path / f"questions-{seed}.txt"
    path.write_text("\n".join(lines) + "\n")
    return words, base, path


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("restrict", [300000, 30])
def test_per_section_counts_equal_gensims_evaluate_word_analogies(tmp_path, seed, restrict):
    gensim_kv = pytest.importorskip("gensim.models.keyedvectors")
    words, vectors, path = _random_setup(tmp_path, seed)
    kv = gensim_kv.KeyedVectors(vector_size=vectors.shape[1])
    kv.add_vectors(words, vectors)
    score, sections = kv.evaluate_word_analogies(str(path), restrict_vocab=restrict)
    ours = evaluate(WordVectors(words, vectors), read_questions(path), restrict_vocab=restrict)
    theirs = {s["section"]: (len(s["correct"]), len(s["incorrect"])) for s in sections}
    total = theirs.pop("Total accuracy")
    assert {n: (s["correct"], s["incorrect"]) for n, s in ours["sections"].items()} == theirs
    assert (ours["total"]["correct"], ours["total"]["incorrect"]) == total
    assert ours["total"]["accuracy"] == pytest.approx(score)
    assert 0 < ours["sections"]["offset"]["correct"]  # the test can tell right from wrong


def test_question_files_mikolov_ca8_and_jsonl(tmp_path):
    text = tmp_path / "q.txt"
    text.write_text(": capital\nAthens Greece Oslo Norway\n\n: 首都\n北京 中国 东京 日本\n: phrases\n"
                    "Marlow_Bay x Bell_haven y\n", encoding="utf-8")
    qs = read_questions(text)
    assert [(q.section, q.words, q.where) for q in qs] == [
        ("capital", ("Athens", "Greece", "Oslo", "Norway"), f"{text}:2"),
        ("首都", ("北京", "中国", "东京", "日本"), f"{text}:5"),
        ("phrases", ("Marlow Bay", "x", "Bell haven", "y"), f"{text}:7")]
    write_questions(qs, tmp_path / "again.txt")
    assert read_questions(tmp_path / "again.txt") == [Question(q.section, q.words, f"{tmp_path / 'again.txt'}:{n}")
                                                      for q, n in zip(qs, (2, 4, 6))]
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text(json.dumps({"section": "s", "a": "Mira Castell", "b": "Bellhaven", "c": "x", "d": "y"}) + "\n")
    assert read_questions(jsonl)[0].words == ("Mira Castell", "Bellhaven", "x", "y")


@pytest.mark.parametrize("content, message", [
    (": s\na b c\n", r"q\.txt:2: expected four words .* got 3"),
    ("a b c d\n", r"q\.txt:1: a question before any ': section' line"),
    (": s\na b c d e\n", r"q\.txt:2: expected four words"),
    ("\n\n", r"q\.txt: holds no analogy question"),
])
def test_a_malformed_line_names_file_and_line(tmp_path, content, message):
    (tmp_path / "q.txt").write_text(content)
    with pytest.raises(LmstackError, match=message):
        read_questions(tmp_path / "q.txt")


def test_a_jsonl_record_missing_a_field_names_its_line(tmp_path):
    (tmp_path / "q.jsonl").write_text('{"section": "s", "a": "1", "b": "2", "c": "3", "d": "4"}\n'
                                      '{"section": "s", "a": "1", "b": "2", "c": "3"}\n')
    with pytest.raises(LmstackError, match=r"q\.jsonl:2: field 'd'"):
        read_questions(tmp_path / "q.jsonl")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    text = ["So Mira lives in Bellhaven and Tomas lives in Redcliff. 米拉住在贝尔港。"] * 30
    tokenizer = train_bpe(text, vocab_size=320)
    torch.manual_seed(0)
    model = build_model(preset("llama-tiny", vocab_size=tokenizer.vocab_size, block_size=64, n_layer=2))
    return save_model(model, tmp_path_factory.mktemp("llama"), tokenizer)


def test_inspect_analogies_writes_a_report_and_refuses_to_overwrite(model_dir, tmp_path):
    q = tmp_path / "q.txt"
    q.write_text(": home\nMira Bellhaven Tomas Redcliff\nMira Bellhaven Nobody Redcliff\n"
                 ": 中文\n米拉 贝尔港 Mira Bellhaven\n", encoding="utf-8")
    out = tmp_path / "report.json"
    # the vocabulary is the questions' words in order: Mira Bellhaven Tomas Redcliff | Nobody 米拉 贝尔港
    result = inspect_analogies(model_dir, q, out=out, layer=2, restrict_vocab=4)
    report = json.loads(out.read_text())
    assert result["questions"] == 3 and result["covered"] == 1 and result["coverage"] == pytest.approx(1 / 3)
    assert report["sections"]["home"]["questions"] == 2 and report["vectors"] == "layer 2 (contextual: after block 2)"
    assert report["sections"]["中文"]["covered"] == 0 and report["total"]["correct"] == 1  # only Redcliff is left
    assert inspect_analogies(model_dir, q)["covered"] == 3  # every word has a vector without the limit
    before = out.read_bytes()
    with pytest.raises(LmstackError, match="exists"):
        inspect_analogies(model_dir, q, out=out)
    (tmp_path / "bad.txt").write_text(": s\nonly three words\n")
    with pytest.raises(LmstackError, match="bad.txt:2"):
        inspect_analogies(model_dir, tmp_path / "bad.txt", out=out, overwrite=True)
    with pytest.raises(LmstackError, match="--method"):
        inspect_analogies(model_dir, q, method="3cosdiv", out=out, overwrite=True)
    assert out.read_bytes() == before  # nothing written over by a refused run
    assert inspect_analogies(model_dir, q, method="3cosmul", tokens=True)["questions"] == 3


def test_inspect_projection_draws_chinese_and_english_labels(model_dir, tmp_path):
    out = tmp_path / "pca.png"
    result = inspect_projection(model_dir, ["Mira", "Tomas", "Bellhaven", "贝尔港", "米拉"], out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and result["words"] == 5
    assert 0 < sum(result["explained_variance"]) <= 1 + 1e-9
    with pytest.raises(LmstackError, match="exists"):
        inspect_projection(model_dir, ["Mira", "Tomas"], out)
    with pytest.raises(LmstackError, match="at least two"):
        inspect_projection(model_dir, ["Mira", "Mira"], tmp_path / "one.png")


def test_pca_matches_the_svd_formula():
    from lmstack.interpret.projection import pca_2d

    x = np.random.default_rng(0).normal(size=(12, 5))
    points, share = pca_2d(x)
    cov_vals, cov_vecs = np.linalg.eigh(np.cov(x.T))
    top = cov_vecs[:, ::-1][:, :2]
    np.testing.assert_allclose(np.abs(points), np.abs((x - x.mean(0)) @ top), atol=1e-9)
    np.testing.assert_allclose(share, cov_vals[::-1][:2] / cov_vals.sum(), rtol=1e-9)


COMMANDS = {"inspect neighbours": ("lmstack.interpret.vector_commands:inspect_neighbours", "neighbours"),
            "inspect analogies": ("lmstack.interpret.vector_commands:inspect_analogies", "analogies"),
            "inspect projection": ("lmstack.interpret.vector_commands:inspect_projection", "projection")}


def test_the_commands_run_from_the_cli_and_bad_input_exits_non_zero(model_dir, tmp_path, monkeypatch, capsys):
    from lmstack import cli

    monkeypatch.setattr(cli, "COMMANDS", {**cli.COMMANDS, **COMMANDS})
    for name in COMMANDS:  # every option documented, as tests/test_cli_commands.py checks for registered ones
        fn = cli._resolve(COMMANDS[name][0])
        assert set(cli._param_docs(fn)) == set(inspect.signature(fn).parameters), name
    q = tmp_path / "q.txt"
    q.write_text(": home\nMira Bellhaven Tomas Redcliff\n")
    cli.main(["inspect", "analogies", str(model_dir), str(q), "--method", "3cosmul", "--json"])
    assert json.loads(capsys.readouterr().out)["questions"] == 1
    cli.main(["inspect", "neighbours", str(model_dir), "Mira", "贝尔港", "--k", "2", "--layer", "1", "--json"])
    assert set(json.loads(capsys.readouterr().out)["neighbours"]) == {"Mira", "贝尔港"}
    q.write_text(": home\nMira Bellhaven Tomas\n")
    with pytest.raises(SystemExit) as stop:
        cli.main(["inspect", "analogies", str(model_dir), str(q)])
    assert stop.value.code != 0 and f"{q}:2: expected four words" in capsys.readouterr().err
