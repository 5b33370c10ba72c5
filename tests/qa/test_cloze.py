import json

import pytest
import torch

from lmstack.cli import main
from lmstack.errors import LmstackError
from lmstack.model.config import preset
from lmstack.model.encoder_text import specials
from lmstack.model.families.bert import build_encoder
from lmstack.model.heads import EncoderForMaskedLM
from lmstack.model.hf import save_model
from lmstack.qa.cloze import cloze_answer, cloze_inputs, pet_loss
from lmstack.text.tokenizer import train_bpe

REVIEWS = [("The soup was lovely and warm.", 0), ("The soup was cold and awful.", 1),
           ("A lovely, friendly place.", 0), ("An awful, dirty place.", 1)]
PATTERN = "{text} All in all, it was {mask}."
VERBALIZER = ["great", "terrible"]


@pytest.fixture(scope="module")
def tok():
    return train_bpe([t for t, _ in REVIEWS] + [PATTERN] + VERBALIZER * 5, 330)


def test_one_mask_per_token_of_the_word_in_the_slot(tok):
    ids, masks, word = cloze_inputs(tok, "Mira lives in {mask}.", "Bellhaven")
    sp = specials(tok)
    assert ids[0] == sp.cls_id and ids[-1] == sp.sep_id
    assert [ids[i] for i in masks] == [sp.mask_id] * len(word) and len(word) > 1
    assert masks == list(range(masks[0], masks[0] + len(word)))
    assert word == tok.encode(" Bellhaven")  # the space before the slot goes with the word
    with pytest.raises(LmstackError, match="exactly one"):
        cloze_inputs(tok, "no slot here", "x")


def test_pet_training_through_the_pattern_makes_the_verbalizer_pick_the_label(tok):
    torch.manual_seed(0)
    model = EncoderForMaskedLM(build_encoder(preset("bert-tiny", vocab_size=tok.vocab_size, n_embd=64)))

    def right() -> list[bool]:
        return [cloze_answer(model, tok, PATTERN.replace("{text}", t), VERBALIZER)[0] == y for t, y in REVIEWS]

    assert not all(right())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(25):
        loss = sum(pet_loss(model, tok, PATTERN.replace("{text}", t), VERBALIZER, y) for t, y in REVIEWS)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(right())


def test_cloze_from_the_command_line(tok, tmp_path, capsys):
    torch.manual_seed(0)
    model = EncoderForMaskedLM(build_encoder(preset("bert-tiny", vocab_size=tok.vocab_size, n_embd=64)))
    save_model(model, tmp_path / "mlm", tok)
    pattern = PATTERN.replace("{text}", REVIEWS[0][0])
    main(["cloze", pattern, "--model", str(tmp_path / "mlm"), "--candidates", "great, terrible", "--json"])
    out = json.loads(capsys.readouterr().out)
    best, scores = cloze_answer(model, tok, pattern, VERBALIZER)
    assert out["answer"] == VERBALIZER[best] and list(out["scores"].values()) == pytest.approx(scores, abs=1e-5)
    with pytest.raises(SystemExit):
        main(["cloze", pattern, "--model", str(tmp_path / "mlm"), "--candidates", "great"])
    assert "give two or more comma-separated words" in capsys.readouterr().err
