"""Answer extraction with lm-eval's filter semantics; expected answers worked out by hand from the regexes."""

import json

import pytest

from lmstack.errors import LmstackError
from lmstack.eval.filters import (
    GSM8K_COT_STRICT,
    GSM8K_EXACT_MATCH,
    GSM8K_FLEXIBLE,
    GSM8K_STRICT,
    build_filter,
)
from lmstack.eval.metrics import exact_match

STRICT = [{"function": "regex", "regex_pattern": GSM8K_STRICT}, {"function": "take_first"}]
FLEXIBLE = [{"function": "regex", "group_select": -1, "regex_pattern": GSM8K_FLEXIBLE}, {"function": "take_first"}]
COT_STRICT = [{"function": "regex", "regex_pattern": GSM8K_COT_STRICT}, {"function": "take_first"}]


def test_gsm8k_constants_are_lm_evals():
    assert GSM8K_STRICT == "#### (\\-?[0-9\\.\\,]+)"
    assert GSM8K_FLEXIBLE == "(-?[$0-9.,]{2,})|(-?[0-9]+)"
    assert GSM8K_COT_STRICT == "The answer is (\\-?[0-9\\.\\,]+)."
    assert GSM8K_EXACT_MATCH["regexes_to_ignore"] == [",", "\\$", "(?s).*#### ", "\\.$"]


@pytest.mark.parametrize("text, strict, flexible", [
    ("She pays 2 * 3 = 6.\n#### 6", "6", "6"),
    ("#### -1,200.5 dollars", "-1,200.5", "-1,200.5"),
    ("It costs $1,234.50 in total, so 7", "[invalid]", "7"),  # last match is group 2's "7"
    ("The total is 18.", "[invalid]", "18."),  # [$0-9.,]{2,} takes the period too
    ("I paid $12 for it", "[invalid]", "$12"),
    ("no digits at all", "[invalid]", "[invalid]"),
    ("#### 5 then #### 9", "5", "9"),  # strict takes the first match, flexible the last
])
def test_strict_and_flexible_extract(text, strict, flexible):
    assert build_filter(STRICT)([text]) == strict
    assert build_filter(FLEXIBLE)([text]) == flexible


def test_cot_strict_match_and_its_any_character_period():
    f = build_filter(COT_STRICT)
    assert f(["5 + 4 = 9. The answer is 9."]) == "9"
    assert f(["So 23 - 15 = 8. The answer is 8.\n\nQ: next"]) == "8"
    # the final "." is any character: with nothing after the number it takes one digit from it (lm-eval does too)
    assert f(["The answer is 29"]) == "2"
    assert f(["the answer is 29."]) == "[invalid]"  # case-sensitive


def test_group_select_fallback_and_groups():
    two = [{"function": "regex", "regex_pattern": r"(\d+)", "group_select": 1}]
    assert build_filter(two)(["1 2 3"]) == "2"
    assert build_filter([{**two[0], "group_select": -3}])(["1 2 3"]) == "1"
    assert build_filter([{**two[0], "group_select": 5}])(["1 2 3"]) == "[invalid]"  # past the matches
    assert build_filter([{**two[0], "fallback": "none"}])(["x"]) == "none"
    no_group = [{"function": "regex", "regex_pattern": r"ans: \w+ "}]
    assert build_filter(no_group)(["ans: yes  "]) == "ans: yes"  # the whole match, stripped
    empty_groups = [{"function": "regex", "regex_pattern": r"(a?)(b?)x"}]
    assert build_filter(empty_groups)(["x"]) == "[invalid]"  # lm-eval would raise on this


def test_majority_vote_over_k_samples():
    vote = [{"function": "regex", "regex_pattern": GSM8K_STRICT}, {"function": "majority_vote"},
            {"function": "take_first"}]
    f = build_filter(vote)
    assert f(["#### 3", "#### 5", "#### 5", "#### 3", "#### 5"]) == "5"
    assert f(["#### 7", "#### 4", "#### 4", "#### 7"]) == "7"  # tie: the first seen wins (Counter.most_common)
    assert f(["#### 3", "no answer", "none either"]) == "[invalid]"  # invalid answers vote too, as in lm-eval
    assert build_filter([{"function": "last_number"}, {"function": "majority_vote"}])(
        ["so 12", "it is 12", "maybe 13"]) == "12"


def test_text_transformations():
    assert build_filter([{"function": "lowercase"}])(["  YES "]) == "  yes "
    assert build_filter([{"function": "remove_whitespace"}])(["  42 "]) == " 42 "  # one leading space, as lm-eval
    assert build_filter([{"function": "strip"}])(["  42 \n"]) == "42"
    assert build_filter([{"function": "take_first"}])(["a", "b"]) == "a"
    assert build_filter([{"function": "lowercase"}])([]) == "[invalid]"


def test_bad_steps_are_named():
    with pytest.raises(LmstackError, match=r"filter\[0\].*'regexp'.*valid: regex"):
        build_filter([{"function": "regexp"}])
    with pytest.raises(LmstackError, match="pattern.*valid: regex_pattern, group_select, fallback"):
        build_filter([{"function": "regex", "pattern": "x"}])
    with pytest.raises(LmstackError, match="does not compile"):
        build_filter([{"function": "regex", "regex_pattern": "("}])
    with pytest.raises(LmstackError, match="non-empty list"):
        build_filter([])


def test_gold_gsm8k_solutions_score_100_percent(shared_data):
    path = shared_data / "gsm8k" / "train.jsonl"
    if not path.is_file():
        pytest.skip("gsm8k/train.jsonl is absent")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(records) == 7473
    strict, flexible = build_filter(STRICT), build_filter(FLEXIBLE)
    for name, f in (("strict-match", strict), ("flexible-extract", flexible)):
        hits = sum(exact_match(f([r["answer"]]), [r["answer"].split("####")[-1].strip()], **GSM8K_EXACT_MATCH)
                   for r in records)
        assert hits == len(records), name
        # and against the whole solution as lm-eval's gsm8k target (doc_to_target: "{{answer}}")
        hits = sum(exact_match(f([r["answer"]]), [r["answer"]], **GSM8K_EXACT_MATCH) for r in records)
        assert hits == len(records), name
