"""``lmstack train-classifier`` / ``classify``: an attribute classifier trained on the synthetic world."""

from __future__ import annotations

import json
import random

import pytest
import torch

from lmstack.data.synth import DATASETS, build_world
from lmstack.errors import LmstackError
from lmstack.eval.attribute_classifier import AttributeClassifier, attribute_loss, classify, train_classifier
from lmstack.model.encoder_text import encode_pairs
from lmstack.text.tokenizer import train_bpe


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("classifier")
    (root / "synth").mkdir()
    for split, rows in DATASETS["attributes"](build_world(0), random.Random("0:dataset:attributes"), 0.2).items():
        (root / "synth" / f"attributes_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    texts = [json.loads(line)["text"] for line in (root / "synth" / "attributes_train.jsonl").read_text().splitlines()]
    train_bpe(texts, vocab_size=400).save(root / "tok")
    result = train_classifier(root / "synth" / "attributes_train.jsonl", root / "clf", "sentiment",
                              tokenizer=root / "tok", test_data=root / "synth" / "attributes_test.jsonl", epochs=3,
                              batch_size=16, lr=2e-3, max_len=64)
    return root, result


def test_loss_is_mean_cross_entropy():
    logits, labels = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])
    want = -(torch.log_softmax(logits, -1)[0, 0] + torch.log_softmax(logits, -1)[1, 0]) / 2
    torch.testing.assert_close(attribute_loss(logits, labels), want)


def test_the_classifier_learns_held_out_sentiment(trained):
    root, result = trained
    test = result["test"]
    assert result["labels"] == ["negative", "positive"] and test["attribute"] == "sentiment"
    assert result["loss_last"] < result["loss_first"]
    assert test["items"] > 10 and test["accuracy"] >= max(0.8, test["chance"] + 0.2)
    again = classify(root / "clf", data=root / "synth" / "attributes_test.jsonl", max_len=64)
    assert again["accuracy"] == test["accuracy"] and set(again["by_lang"]) == {"en", "zh"}
    rows = [json.loads(line) for line in (root / "synth" / "attributes_test.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["attribute"] == "sentiment"]
    labelled = classify(root / "clf", text=[r["text"] for r in rows], max_len=64)["predictions"]
    right = sum(p["label"] == r["label"] for p, r in zip(labelled, rows))
    assert right / len(rows) == pytest.approx(test["accuracy"], abs=1e-4)


def test_transformers_loads_it_with_the_labels_and_the_same_logits(trained):
    from transformers import BertForSequenceClassification

    root, _ = trained
    ours = AttributeClassifier.load(root / "clf")
    theirs = BertForSequenceClassification.from_pretrained(root / "clf").eval()
    assert theirs.config.id2label == {0: "negative", 1: "positive"}
    assert theirs.config.label2id == {"negative": 0, "positive": 1}
    batch = encode_pairs(ours.tokenizer, ["I had the soup. It was cold and bland."])
    with torch.no_grad():
        torch.testing.assert_close(theirs(**batch).logits, ours.model(**batch), rtol=1e-4, atol=1e-4)


def test_bad_input_is_one_line_and_nothing_is_overwritten(trained, tmp_path):
    root, _ = trained
    data = root / "synth" / "attributes_train.jsonl"
    before = (root / "clf" / "model.safetensors").read_bytes()
    with pytest.raises(LmstackError, match="exists"):
        train_classifier(data, root / "clf", "sentiment", tokenizer=root / "tok")
    assert (root / "clf" / "model.safetensors").read_bytes() == before
    with pytest.raises(LmstackError, match="no rows with attribute 'mood'; the file has: politeness, sentiment, topic"):
        train_classifier(data, tmp_path / "x", "mood", tokenizer=root / "tok")
    assert not (tmp_path / "x").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    with pytest.raises(LmstackError, match="expected an attribute classifier"):
        classify(tmp_path / "other", text=["hi"])
    with pytest.raises(LmstackError, match="give --data"):
        classify(root / "clf")
