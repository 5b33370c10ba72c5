"""Han characters (CJK ideographs): the one definition used by tokenising, cleaning, metrics and plots."""

from __future__ import annotations

import re

# CJK Extension A, the Unified Ideographs, Compatibility Ideographs, and the supplementary planes' extensions B-F.
HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff"
HAS_HAN = re.compile(f"[{HAN}]")


def has_han(text: str) -> bool:
    """Whether ``text`` holds at least one Han character."""
    return HAS_HAN.search(text) is not None
