import json

import pytest
import torch
import transformers
from torch import nn

from lmstack.cli import main
from lmstack.errors import LmstackError
from lmstack.model.config import ModelConfig, preset
from lmstack.model.families.bert import build_encoder
from lmstack.model.heads import EncoderForMultipleChoice
from lmstack.model.hf import save_model
from lmstack.model.families import build_model
from lmstack.qa.choice import (
    ChoiceItem,
    accuracy,
    choices_from_examples,
    predict_choices,
    prompt_and_options,
    read_choice_items,
    score_options,
    train_choice,
)
from lmstack.qa.squad import write_squad
from lmstack.text.tokenizer import train_char

FACTS = [("Where does Mira live?", "Bellhaven"), ("Where does Otto live?", "Fernvale"),
         ("What is Ada's job?", "baker"), ("Who is Leo's friend?", "Nora")]


class Uniform(nn.Module):
    """A stand-in decoder whose next-token distribution is uniform over the vocabulary."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab

    def forward(self, idx):
        return torch.zeros(*idx.shape, self.vocab)


def test_prompt_follows_the_corpus_format_with_the_space_on_the_option():
    assert prompt_and_options("Where?", ["Bellhaven"]) == ("Question: Where?\nAnswer:", [" Bellhaven"])
    assert prompt_and_options("住在哪里？", ["贝尔港"]) == ("问：住在哪里？\n答：", ["贝尔港"])


def test_length_normalisation_by_hand():
    tok = train_char(["Question: Answer: ab abcd"])
    scores = score_options(Uniform(tok.vocab_size), tok, "q", ["ab", "abcd"], normalize=False)
    logv = torch.log(torch.tensor(float(tok.vocab_size))).item()
    assert scores == pytest.approx([-3 * logv, -5 * logv], rel=1e-5)  # " ab" is 3 characters, " abcd" 5
    assert score_options(Uniform(tok.vocab_size), tok, "q", ["ab", "abcd"]) == pytest.approx([-logv, -logv], rel=1e-5)
    with pytest.raises(LmstackError, match="no options"):
        score_options(Uniform(tok.vocab_size), tok, "q", [])


def test_a_trained_decoder_prefers_the_answer_it_learned():
    texts = [f"Question: {q}\nAnswer: {a}" for q, a in FACTS]
    tok = train_char(texts)
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=64))
    rows = [tok.encode(t, eos=True) for t in texts]
    batch = torch.tensor([r + [tok.eos_id] * (max(map(len, rows)) - len(r)) for r in rows])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = nn.functional.cross_entropy(model(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    options = [a for _, a in FACTS]
    for i, (q, _) in enumerate(FACTS):
        scores = score_options(model, tok, q, options)
        assert max(range(len(options)), key=scores.__getitem__) == i, (q, scores)


def test_choices_from_examples_keep_the_gold_among_same_language_distractors(synth_qa):
    items = choices_from_examples(synth_qa["train"][:200], n_options=4, seed=0)
    gold = {ex.question: ex.answers[0].text for ex in synth_qa["train"][:200] if ex.answers}
    assert len(items) == len(gold)
    for it in items:
        assert len(set(it.options)) == 4 and it.options[it.label] == gold[it.question]
    assert {it.label for it in items} == {0, 1, 2, 3}


def _fruit_items() -> list[ChoiceItem]:
    fruit, furniture = ["apple", "pear", "plum", "fig"], ["chair", "table", "sofa", "desk", "bed", "shelf"]
    items = []
    for i, right in enumerate(fruit * 2):
        options = [furniture[i % 6], furniture[(i + 1) % 6]]
        options.insert(i % 3, right)
        items.append(ChoiceItem("Which one can you eat?", options, i % 3))
    return items


def test_the_choice_head_learns_to_pick_the_right_option():
    items = _fruit_items()
    tok = train_char([it.question + "".join(it.options) for it in items])
    torch.manual_seed(0)
    model = EncoderForMultipleChoice(build_encoder(preset("bert-tiny", vocab_size=tok.vocab_size, n_embd=64)))
    before = accuracy(predict_choices(model, tok, items), items)
    figures = train_choice(model, tok, items, epochs=30, batch_size=8, lr=2e-3)
    assert figures["loss_last"] < figures["loss_first"] / 4
    assert accuracy(predict_choices(model, tok, items), items) == 1.0 > before


def _write_items(path, items) -> str:
    path.write_text("".join(json.dumps({"question": it.question, "options": it.options, "label": it.label}) + "\n"
                            for it in items), encoding="utf-8")
    return str(path)


def test_train_and_evaluate_a_choice_head_from_the_command_line(tmp_path, capsys):
    items = _fruit_items()
    data = _write_items(tmp_path / "items.jsonl", items)
    train_char([it.question + "".join(it.options) for it in items]).save(tmp_path / "tok")
    main(["train-multiple-choice", data, "--out", str(tmp_path / "mc"), "--tokenizer", str(tmp_path / "tok"),
          "--epochs", "30", "--batch-size", "8", "--lr", "2e-3", "--json"])
    trained = json.loads(capsys.readouterr().out)
    assert trained["items"] == 8 and trained["loss_last"] < trained["loss_first"]
    main(["choice-eval", data, "--model", str(tmp_path / "mc"), "--json"])
    scored = json.loads(capsys.readouterr().out)
    assert scored["method"] == "choice head" and scored["accuracy"] == trained["train_accuracy"] > 0.5
    assert transformers.BertForMultipleChoice.from_pretrained(tmp_path / "mc") is not None


def test_choice_eval_scores_a_decoder_by_log_likelihood(tmp_path, capsys):
    items = [ChoiceItem(f"Where does {q.split()[-1]}", [a for _, a in FACTS], i) for i, (q, _) in enumerate(FACTS)]
    tok = train_char([f"Question: {it.question}\nAnswer: " + " ".join(it.options) for it in items])
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32))
    save_model(model, tmp_path / "lm", tok)
    main(["choice-eval", _write_items(tmp_path / "items.jsonl", items), "--model", str(tmp_path / "lm"), "--json"])
    scored = json.loads(capsys.readouterr().out)
    picks = [max(range(4), key=score_options(model.eval(), tok, it.question, it.options).__getitem__) for it in items]
    assert scored["method"] == "log-likelihood per token" and scored["accuracy"] == accuracy(picks, items)


def test_choice_items_from_records_or_from_extractive_data(synth_qa, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "options": ["a", "b"], "label": 0}\n{"question": "q", "options": ["a"]}\n')
    with pytest.raises(LmstackError, match=f"{bad}:2: expected"):
        read_choice_items(bad)
    uneven = tmp_path / "uneven.jsonl"
    uneven.write_text('{"question": "q", "options": ["a", "b"], "label": 0}\n'
                      '{"question": "q", "options": ["a", "b", "c"], "label": 2}\n')
    with pytest.raises(LmstackError, match="3 options, but the first item has 2"):
        read_choice_items(uneven)
    examples = synth_qa["train"][:40]
    write_squad(tmp_path / "qa.json", examples)
    items = read_choice_items(tmp_path / "qa.json")
    gold = {ex.question: ex.answers[0].text for ex in examples if ex.answers}
    assert len(items) == len(choices_from_examples(examples)) > 0
    assert all(it.options[it.label] == gold[it.question] and len(it.options) == 4 for it in items)
