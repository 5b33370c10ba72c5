"""``lmstack score``: existing outputs scored with no model, identical to sacrebleu's own figures."""

import json
from pathlib import Path

import pytest
import sacrebleu
from sacrebleu.metrics import BLEU, CHRF

from lmstack.cli import parse_args
from lmstack.errors import LmstackError
from lmstack.eval.metrics import rouge
from lmstack.eval.score_command import read_segments, score

HYPS = ["The cat sat on the mat.", "A quick brown fox jumps over the lazy dog", "He read the books yesterday."]
REF1 = ["The cat is sitting on the mat.", "The quick brown fox jumped over the lazy dog", "He read books yesterday."]
REF2 = ["A cat sat on the mat.", "A fast brown fox leaps over a lazy dog", "Yesterday he was reading books."]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def test_hypotheses_against_two_reference_files(tmp_path, capsys):
    hyp, r1, r2 = (write_lines(tmp_path / n, x) for n, x in (("hyp", HYPS), ("r1", REF1), ("r2", REF2)))
    out = score(hypotheses=hyp, references=[r1, r2], metrics="bleu,chrf,ter,rouge", json_out=tmp_path / "s.json")
    bleu = sacrebleu.corpus_bleu(HYPS, [REF1, REF2])
    assert out["bleu"] == bleu.score and out["n"] == 3
    assert out["chrf"] == sacrebleu.corpus_chrf(HYPS, [REF1, REF2]).score
    assert out["ter"] == sacrebleu.corpus_ter(HYPS, [REF1, REF2]).score
    assert out["rougeL"] == rouge(HYPS, [list(r) for r in zip(REF1, REF2)])["rougeL"]
    assert out["bleu_signature"].startswith("nrefs:2|case:mixed|eff:no|tok:13a")
    printed = capsys.readouterr().out.splitlines()
    metric = BLEU()
    metric.corpus_score(HYPS, [REF1, REF2])
    assert printed[0] == bleu.format(width=1, signature=metric.get_signature().format())  # sacrebleu -f text
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["bleu"] == out["bleu"] and saved["references"] == [str(r1), str(r2)]


def test_predictions_jsonl_with_reference_or_references(tmp_path):
    records = [{"prediction": "Paris", "references": ["paris", "Paris"]},
               {"prediction": "the Denver Broncos", "reference": "Denver Broncos"},
               {"prediction": "42", "reference": "41"}]
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    out = score(predictions=path, metrics="exact_match,squad_em,squad_f1,bleu")
    assert out["exact_match"] == pytest.approx(1 / 3)  # "Paris" = its 2nd reference; nothing else verbatim
    assert out["squad_em"] == pytest.approx(2 / 3)
    low, high = out["squad_em_ci95"]
    assert 0 <= low <= out["squad_em"] <= high <= 1
    preds = [r["prediction"] for r in records]
    assert out["bleu"] == sacrebleu.corpus_bleu(preds, [["paris", "Denver Broncos", "41"],
                                                        ["Paris", None, None]]).score


def test_chinese_uses_zh_tokenisation(tmp_path):
    hyp = write_lines(tmp_path / "h", ["我今天很高兴。", "北京是中国的首都"])
    ref = write_lines(tmp_path / "r", ["今天我很开心。", "中国的首都是北京"])
    out = score(hypotheses=hyp, references=[ref], metrics="bleu,rouge", lang="zh")
    assert out["bleu"] == sacrebleu.corpus_bleu(["我今天很高兴。", "北京是中国的首都"],
                                                [["今天我很开心。", "中国的首都是北京"]], tokenize="zh").score
    assert "tok:zh" in out["bleu_signature"] and out["rouge1"] > 0.5


def test_bad_input_is_one_line_naming_the_files(tmp_path):
    hyp = write_lines(tmp_path / "hyp.txt", HYPS)
    short = write_lines(tmp_path / "ref.txt", REF1[:2])
    with pytest.raises(LmstackError, match=r"ref.txt has 2 lines but .*hyp.txt has 3"):
        score(hypotheses=hyp, references=[short], json_out=tmp_path / "never.json")
    assert not (tmp_path / "never.json").exists()
    with pytest.raises(LmstackError, match="unknown metric.*blue.*valid: bleu"):
        score(hypotheses=hyp, references=[short], metrics="blue")
    with pytest.raises(LmstackError, match="either a hypotheses file"):
        score()
    with pytest.raises(LmstackError, match="needs --references"):
        score(hypotheses=hyp)
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prediction": "a", "reference": "a"}\n{"prediction": "b", "references": 3}\n', encoding="utf-8")
    with pytest.raises(LmstackError, match=r"p.jsonl:2: 'references' must be a list"):
        score(predictions=bad, metrics="exact_match")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(LmstackError, match=r"latin1.txt:1: not UTF-8"):
        read_segments(tmp_path / "latin1.txt")
    with pytest.raises(LmstackError, match="ROUGE: no tokenizer for lang 'fi'"):
        score(hypotheses=hyp, references=[hyp], metrics="rouge", lang="fi")


def test_signature_is_the_cli(tmp_path):
    kwargs = parse_args(score, ["--hypotheses", "h.txt", "--references", "a.txt", "b.txt", "--metrics", "bleu"],
                        prog="lmstack score")
    assert kwargs["hypotheses"] == Path("h.txt") and kwargs["references"] == [Path("a.txt"), Path("b.txt")]
    assert kwargs["metrics"] == "bleu" and kwargs["predictions"] is None


def test_wmt16_en_fi_second_reference_against_the_first(shared_data):
    folder = shared_data / "wmt16_en_fi"
    hyp, ref = folder / "newstestB2016-enfi.fi", folder / "newstest2016-enfi.fi"
    if not hyp.is_file() or not ref.is_file():
        pytest.skip("wmt16_en_fi is absent")
    out = score(hypotheses=hyp, references=[ref], metrics="bleu,chrf", lang="fi")
    hyps = [line.rstrip() for line in hyp.open(encoding="utf-8", newline="\n")]
    refs = [line.rstrip() for line in ref.open(encoding="utf-8", newline="\n")]
    assert out["n"] == len(hyps) == 3000
    bleu, chrf = BLEU(), CHRF()
    assert out["bleu"] == bleu.corpus_score(hyps, [refs]).score
    assert out["chrf"] == chrf.corpus_score(hyps, [refs]).score
    assert out["bleu_signature"] == bleu.get_signature().format()
    assert out["chrf_signature"] == chrf.get_signature().format()
    assert 40 < out["bleu"] < 70  # two independent translations of newstest2016, not identical
