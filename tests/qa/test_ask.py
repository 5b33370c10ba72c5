import json

import pytest
import torch

from lmstack.cli import main
from lmstack.errors import LmstackError
from lmstack.model.config import ModelConfig
from lmstack.model.families import build_model
from lmstack.model.hf import save_model
from lmstack.qa import ask as ask_module
from lmstack.qa.ask import ask, generation_prompt
from lmstack.qa.reader import ReaderSettings, new_reader
from lmstack.retrieval.documents import Passage
from lmstack.retrieval.index import build
from lmstack.text.tokenizer import train_bpe


@pytest.fixture(scope="module")
def index(synth_qa, tmp_path_factory):
    path = tmp_path_factory.mktemp("qa") / "index"
    build([Passage(p["id"], p["text"]) for p in synth_qa["passages"]], path)
    return path


@pytest.fixture(scope="module")
def reader(synth_qa, tmp_path_factory):
    """An untrained reader: enough to check the plumbing, not the answers."""
    path = tmp_path_factory.mktemp("qa") / "reader"
    new_reader(synth_qa["train"][:100], vocab_size=400, settings=ReaderSettings(max_len=96)).save(path)
    return path


@pytest.fixture(scope="module")
def generator(synth_qa, tmp_path_factory):
    path = tmp_path_factory.mktemp("qa") / "generator"
    tok = train_bpe([p["text"] for p in synth_qa["passages"]], 400)
    torch.manual_seed(0)
    save_model(build_model(ModelConfig(vocab_size=tok.vocab_size, block_size=1024, n_layer=1, n_head=2, n_embd=32)),
               path, tok)
    return path


def test_reader_answers_with_a_span_of_the_passage_it_cites(index, reader):
    out = ask("Where does Theo Thorne live?", index, reader=reader, k=3)
    assert out["mode"] == "reader" and len(out["passages"]) == 3
    ids = [p["id"] for p in out["passages"]]
    assert "person-00-en" in ids  # BM25 finds his passage (and those naming him as a friend)
    [cited] = out["cited"]
    text = next(p["text"] for p in out["passages"] if p["id"] == cited)
    assert cited in ids and out["answer"] and text[out["span"][0]:out["span"][1]] == out["answer"]
    assert set(out["seconds"]) == {"retrieve", "answer", "total"}


def test_bad_requests_are_one_line_errors(index, reader, generator):
    with pytest.raises(LmstackError, match="the question is empty"):
        ask("   ", index, reader=reader)
    with pytest.raises(LmstackError, match="exactly one of --reader"):
        ask("Where?", index)
    with pytest.raises(LmstackError, match="exactly one of --reader"):
        ask("Where?", index, reader=reader, generator=generator)
    with pytest.raises(LmstackError, match="not an lmstack index"):
        ask("Where?", index.parent, reader=reader)


def test_generation_prompt_numbers_passages_by_id(generator):
    from lmstack.text.tokenizer import Tokenizer

    prompt = generation_prompt(Tokenizer.load(generator), "Where?", [("p-1", "One."), ("p-2", "Two.")])
    assert "[p-1] One.\n[p-2] Two." in prompt and "Question: Where?" in prompt
    assert prompt.rstrip().endswith("<|im_start|>assistant")


def test_generator_cites_only_retrieved_passages(index, generator, monkeypatch):
    real = ask("Where does Theo Thorne live?", index, generator=generator, k=2, max_new_tokens=4)
    assert real["mode"] == "generator" and isinstance(real["answer"], str)  # a random model: plumbing only
    monkeypatch.setattr("lmstack.qa.ask.generate",
                        lambda *a, **kw: ["Stonebridge [person-00-en] [made-up-id] [person-00-en]"])
    out = ask("Where does Theo Thorne live?", index, generator=generator, k=2)
    assert out["answer"] == "Stonebridge" and out["cited"] == ["person-00-en"]


def test_ask_from_the_command_line_prints_one_json_object(index, reader, capsys):
    main(["ask", "谁是西奥·索恩最好的朋友？", "--index", str(index), "--reader", str(reader), "--k", "2", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["question"] == "谁是西奥·索恩最好的朋友？" and len(out["passages"]) == 2
    assert out["passages"][0]["id"].endswith("-zh")
    with pytest.raises(SystemExit) as exit:
        main(["ask", "", "--index", str(index), "--reader", str(reader)])
    assert exit.value.code == 2 and "the question is empty" in capsys.readouterr().err


@pytest.mark.slow
def test_qa_demo_step_learns_to_answer_held_out_questions(tmp_path):
    from lmstack.data.synth import synth

    synth(tmp_path / "synth", seed=0, scale=1.0)
    figures = ask_module.qa_demo_step(tmp_path / "qa", tmp_path / "synth", seconds=30)
    assert figures["recall@3"] > 0.9 and figures["reader_exact"] > 15 and figures["open_exact"] > 5
    assert {e["lang"] for e in figures["examples"]} == {"en", "zh"}
