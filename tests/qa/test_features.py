import pytest

from lmstack.errors import LmstackError
from lmstack.qa.features import char_to_token, collate, make_features, windows
from lmstack.qa.squad import Answer, SquadExample


def span_text(f, context):
    return context[f.offsets[f.start][0]:f.offsets[f.end][1]].strip()


def test_char_to_token_covers_the_span():
    offsets = [(0, 3), (3, 4), (4, 9), (9, 10)]
    assert char_to_token(offsets, 4, 9) == (2, 2)
    assert char_to_token(offsets, 1, 5) == (0, 2)  # a span inside tokens takes the whole tokens
    assert char_to_token(offsets, 10, 12) is None


def test_windows_cover_every_token_with_the_stride():
    assert windows(10, 4, 3) == [0, 3, 6]
    assert windows(4, 4, 2) == [0]
    for n, size, stride in ((100, 17, 5), (33, 32, 1), (7, 3, 3)):
        starts = windows(n, size, stride)
        assert set().union(*(range(s, min(s + size, n)) for s in starts)) == set(range(n))


@pytest.mark.parametrize("tok", ["bpe", "chars"])
def test_answer_spans_round_trip_through_tokens(synth_qa, request, tok):
    tokenizer = request.getfixturevalue(tok)
    examples = synth_qa["train"][:300]
    features = make_features(tokenizer, examples, max_len=128, doc_stride=48, train=True)
    holding = {}
    for f in features:
        ex = examples[f.example]
        if ex.is_impossible or f.start == 0:
            assert f.start == f.end == 0
            continue
        holding[ex.id] = f
        text = span_text(f, ex.context)
        if tok == "chars" or ex.lang == "en":
            assert text == ex.answers[0].text
        else:  # byte-level BPE may merge a Chinese answer with its neighbours: the span still holds it
            assert ex.answers[0].text in text
        assert f.token_type_ids[f.start] == 1 and f.end >= f.start
    assert set(holding) == {ex.id for ex in examples if not ex.is_impossible}


def test_long_context_is_split_into_overlapping_windows_that_each_place_the_answer(bpe):
    filler = " ".join(f"Sentence {i} says nothing much." for i in range(30))
    context = f"{filler} The treasure is buried under the old stone bridge. {filler}"
    answer = "the old stone bridge"
    ex = SquadExample("long", "Where is the treasure?", context, [Answer(answer, context.index(answer))])
    features = make_features(bpe, [ex], max_len=48, doc_stride=16, train=True)
    assert len(features) > 10
    assert all(len(f.input_ids) <= 48 for f in features)
    holding = [f for f in features if f.start > 0]
    assert holding and all(span_text(f, context) == answer for f in holding)
    assert len(holding) < len(features)  # the other windows point at [CLS]
    covered = {o for f in features for o in f.offsets if o is not None}
    assert covered == set(map(tuple, bpe.encode_with_offsets(context)[1]))


def test_unlocated_answers_make_no_training_features_but_are_kept_for_prediction(bpe):
    ex = SquadExample("x", "Where?", "In Bellhaven.", [Answer("Paris", -1)])
    assert make_features(bpe, [ex], train=True) == []
    assert len(make_features(bpe, [ex])) == 1


def test_max_len_too_small_for_the_question_is_a_clear_error(bpe):
    ex = SquadExample("x", "Where does the very long question go to find its answer?", "Here.", [])
    with pytest.raises(LmstackError, match="max_len=8 leaves no room"):
        make_features(bpe, [ex], max_len=8)


def test_collate_pads_right_and_masks(bpe, synth_qa):
    features = make_features(bpe, synth_qa["train"][:4], max_len=128, train=True)
    batch = collate(features, pad_id=0)
    lengths = [len(f.input_ids) for f in features]
    assert batch["input_ids"].shape == (4, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert batch["start_positions"].tolist() == [f.start for f in features]
