"""README.md and its Chinese version README.zh-CN.md stay in step.

Both must name the same ``make`` targets and ``lmstack`` commands, document every command of ``lmstack.cli.COMMANDS``,
carry the same fenced code blocks (byte for byte, in order), the same inline code spans and link targets, tables of
the same shape, and the same figures (every number, compared per table row and per ``##`` section), so that a change
to one file that is not mirrored in the other fails here.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from pathlib import Path

import pytest

from lmstack.cli import ALIASES, COMMANDS

ROOT = Path(__file__).resolve().parents[1]
EN = ROOT / "README.md"
ZH = ROOT / "README.zh-CN.md"
READMES = (EN, ZH)

FENCE = re.compile(r"^```[^\n]*\n.*?^```[ \t]*$", re.M | re.S)
SPAN = re.compile(r"`((?:[^`\n]|\n(?!\s*\n))+)`")  # inline code; may wrap a line, never a paragraph
LMSTACK = re.compile(r"(?<![\w.-])lmstack\s+([a-z][a-z0-9-]*)(?:[ \t]+([a-z][a-z0-9-]*))?(?![\w+.])")
MAKE = re.compile(r"(?<![\w.-])make\s+([a-z][\w-]*)")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
LINK = re.compile(r"\]\(([^)\s]+)\)")
LANGUAGE_LINKS = {"README.md", "README.zh-CN.md"}


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _blocks(text: str) -> list[str]:
    return FENCE.findall(text)


def _prose(text: str) -> str:
    return FENCE.sub("", text)


def _spans(text: str) -> set[str]:
    return {" ".join(s.split()) for s in SPAN.findall(_prose(text))}


def _code(text: str) -> list[str]:
    """Everything a reader would type: fenced blocks and inline code spans."""
    return _blocks(text) + sorted(_spans(text))


def _command(first: str, second: str) -> str:
    """`lmstack scaling fit` names the two-word command "scaling fit"; `lmstack train --x` names "train"."""
    return f"{first} {second}" if f"{first} {second}" in COMMANDS else first


def _commands_in(code: str) -> set[str]:
    return {_command(*m) for m in LMSTACK.findall(code)}


def _lmstack_commands(text: str) -> set[str]:
    return {c for code in _code(text) for c in _commands_in(code)}


def _make_targets(text: str) -> set[str]:
    return {m for code in _code(text) for m in MAKE.findall(code)}


def _makefile_recipes() -> dict[str, str]:
    """Makefile target -> its recipe lines."""
    recipes: dict[str, str] = {}
    target = None
    for line in _text(ROOT / "Makefile").splitlines():
        rule = re.match(r"([A-Za-z][\w-]*)\s*:(?!=)", line)
        if rule:
            target = rule.group(1)
            recipes[target] = ""
        elif line.startswith("\t") and target:
            recipes[target] += line + "\n"
        elif line.strip():
            target = None
    return recipes


def _named_commands(text: str) -> set[str]:
    """CLI commands a README names: `lmstack X`, a code span starting with X, or a `make` target that runs X."""
    named = _lmstack_commands(text)
    named |= {_command(*(span.split() + [""])[:2]) for span in _spans(text)
              if _command(*(span.split() + [""])[:2]) in COMMANDS}
    recipes = _makefile_recipes()
    for target in _make_targets(text):
        named |= {c for c in _commands_in(recipes.get(target, "")) if c in COMMANDS}
    return {ALIASES.get(c, c) for c in named}


def _sections(text: str) -> list[str]:
    return re.split(r"^## ", _prose(text), flags=re.M)


def _tables(text: str) -> list[list[list[str]]]:
    """Each Markdown table as rows of cells (separator rows dropped)."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in _prose(text).splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def _numbers(text: str) -> Counter[str]:
    return Counter(NUMBER.findall(text))


def test_chinese_readme_is_linked_both_ways() -> None:
    assert "[中文说明](README.zh-CN.md)" in _text(EN).splitlines()[:4]
    assert "(README.md)" in "\n".join(_text(ZH).splitlines()[:4])


def test_same_make_targets_and_they_exist() -> None:
    en, zh = _make_targets(_text(EN)), _make_targets(_text(ZH))
    assert {"demo", "test"} <= en
    assert en == zh, f"only in README.md: {sorted(en - zh)}; only in README.zh-CN.md: {sorted(zh - en)}"
    assert en <= set(_makefile_recipes()), f"not Makefile targets: {sorted(en - set(_makefile_recipes()))}"


def test_same_lmstack_commands_and_they_exist() -> None:
    en, zh = _lmstack_commands(_text(EN)), _lmstack_commands(_text(ZH))
    assert en == zh, f"only in README.md: {sorted(en - zh)}; only in README.zh-CN.md: {sorted(zh - en)}"
    unknown = en - set(COMMANDS) - set(ALIASES)
    assert not unknown, f"README names commands lmstack.cli does not have: {sorted(unknown)}"


@pytest.mark.parametrize("path", READMES, ids=lambda p: p.name)
def test_every_cli_command_is_documented(path: Path) -> None:
    missing = set(COMMANDS) - _named_commands(_text(path))
    assert not missing, f"{path.name} does not mention: {sorted(missing)}"


def test_code_blocks_identical() -> None:
    en, zh = _blocks(_text(EN)), _blocks(_text(ZH))
    for i, (a, b) in enumerate(zip(en, zh)):
        diff = "\n".join(difflib.unified_diff(a.splitlines(), b.splitlines(), "README.md", "README.zh-CN.md",
                                              lineterm=""))
        assert a == b, f"fenced block {i} differs:\n{diff}"
    assert len(en) == len(zh), f"{len(en)} fenced blocks in README.md, {len(zh)} in README.zh-CN.md"


def test_code_spans_identical() -> None:
    en, zh = _spans(_text(EN)), _spans(_text(ZH))
    assert en == zh, f"only in README.md: {sorted(en - zh)}; only in README.zh-CN.md: {sorted(zh - en)}"


def test_link_targets_identical() -> None:
    en, zh = (set(LINK.findall(_text(p))) - LANGUAGE_LINKS for p in READMES)
    assert en == zh, f"only in README.md: {sorted(en - zh)}; only in README.zh-CN.md: {sorted(zh - en)}"


def test_tables_same_shape_and_figures() -> None:
    en, zh = _tables(_text(EN)), _tables(_text(ZH))
    assert [len(t) for t in en] == [len(t) for t in zh], "tables differ in number or length"
    for i, (ta, tb) in enumerate(zip(en, zh)):
        for j, (ra, rb) in enumerate(zip(ta, tb)):
            assert len(ra) == len(rb), f"table {i} row {j}: {len(ra)} vs {len(rb)} cells"
            assert _numbers(" ".join(ra)) == _numbers(" ".join(rb)), f"table {i} row {j}: {ra} vs {rb}"


def test_figures_identical_per_section() -> None:
    en, zh = _sections(_text(EN)), _sections(_text(ZH))
    assert len(en) == len(zh), f"{len(en) - 1} sections in README.md, {len(zh) - 1} in README.zh-CN.md"
    for i, (a, b) in enumerate(zip(en, zh)):
        na, nb = _numbers(a), _numbers(b)
        assert na == nb, (f"section {i} ({a.splitlines()[0][:40]!r}): numbers only in README.md "
                          f"{sorted((na - nb).elements())}, only in README.zh-CN.md {sorted((nb - na).elements())}")
