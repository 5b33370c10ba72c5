import torch

from lmstack.qa.features import make_features
from lmstack.qa.reader import postprocess
from lmstack.qa.squad import Answer, SquadExample

CONTEXT = "Mira lives in Bellhaven. She is a baker. Her best friend is Otto Falk."


def planted(features, spans, null=None, T=None):
    """Logits of -5 everywhere, +5 at planted (feature, start, end) token positions, and [CLS] at ``null``."""
    T = T or max(len(f.input_ids) for f in features)
    start, end = torch.full((len(features), T), -5.0), torch.full((len(features), T), -5.0)
    for i, s, e, value in spans:
        start[i, s] += value
        end[i, e] += value
    if null is not None:
        start[:, 0], end[:, 0] = null, null
    return start, end


def token_of(feature, char):
    return next(i for i, o in enumerate(feature.offsets) if o and o[0] <= char < o[1])


def tokens_of(feature, context, text):
    """First and last token of ``text`` in the window."""
    a = context.index(text)
    return token_of(feature, a), token_of(feature, a + len(text) - 1)


def test_the_planted_span_comes_back_as_text(bpe):
    ex = SquadExample("q", "Who is Mira's best friend?", CONTEXT)
    [f] = make_features(bpe, [ex], max_len=64)
    s, e = tokens_of(f, CONTEXT, "Otto Falk")
    start, end = planted([f], [(0, s, e, 10.0)])
    pred = postprocess([ex], [f], start, end, null_threshold=None)["q"]
    assert pred.text == "Otto Falk" and CONTEXT[pred.start:pred.end] == "Otto Falk"
    assert pred.nbest[0][0] == "Otto Falk" and abs(sum(p for _, p in pred.nbest) - 1) < 1e-5


def test_invalid_spans_are_never_chosen(bpe):
    ex = SquadExample("q", "Where?", CONTEXT)
    [f] = make_features(bpe, [ex], max_len=64)
    h0, h1 = tokens_of(f, CONTEXT, "Bellhaven")
    friend = tokens_of(f, CONTEXT, "Otto")[0]
    first, last = token_of(f, 0), token_of(f, len(CONTEXT) - 1)

    def best(starts, ends, **kw):
        start, end = torch.full((1, len(f.input_ids)), -5.0), torch.full((1, len(f.input_ids)), -5.0)
        for i, v in starts:
            start[0, i] = v
        for i, v in ends:
            end[0, i] = v
        return postprocess([ex], [f], start, end, null_threshold=None, **kw)["q"].text

    # the best pair (friend, h1) ends before it starts
    assert best([(friend, 20), (h0, 10)], [(h1, 20)]) == "Bellhaven"
    # the best pair covers the whole context, longer than max_answer_len
    assert best([(first, 25), (h0, 12)], [(last, 25), (h1, 12)], max_answer_len=h1 - h0 + 1) == "Bellhaven"
    assert best([(first, 25), (h0, 12)], [(last, 25), (h1, 12)], max_answer_len=100) == CONTEXT
    # the best pair is on question tokens
    assert f.offsets[1] is None and best([(1, 30), (h0, 10)], [(2, 30), (h1, 10)]) == "Bellhaven"


def test_null_threshold_decides_unanswerable(bpe):
    ex = SquadExample("q", "What is Mira's pet called?", CONTEXT, [], is_impossible=True)
    [f] = make_features(bpe, [ex], max_len=64)
    b0, b1 = tokens_of(f, CONTEXT, "baker")
    start, end = planted([f], [(0, b0, b1, 8.0)], null=6.0)  # span 3 + 3 = 6, null 6 + 6 = 12
    assert postprocess([ex], [f], start, end, null_threshold=0.0)["q"].text == ""
    pred = postprocess([ex], [f], start, end, null_threshold=7.0)["q"]
    assert pred.text == "baker" and abs(pred.null_score_diff - 6.0) < 1e-5
    assert postprocess([ex], [f], start, end, null_threshold=None)["q"].text == "baker"


def test_the_best_span_over_windows_wins_and_null_is_the_smallest_window_null(bpe):
    context = " ".join(f"Line {i} is filler." for i in range(20)) + " The key is in the red box."
    ex = SquadExample("q", "Where is the key?", context, [Answer("the red box", context.index("the red box"))])
    features = make_features(bpe, [ex], max_len=40, doc_stride=12)
    assert len(features) > 3
    r0, r1 = tokens_of(features[-1], context, "red box")
    spans = [(len(features) - 1, r0, r1, 6.0), (0, token_of(features[0], 0), token_of(features[0], 0), 4.0)]
    start, end = planted(features, spans, null=-4.0)
    start[1, 0] = end[1, 0] = 2.0  # one window with a high null score does not make the question unanswerable
    pred = postprocess([ex], features, start, end, null_threshold=0.0)["q"]
    assert pred.text == "red box" and abs(pred.null_score_diff - (-8.0 - 2.0)) < 1e-5
