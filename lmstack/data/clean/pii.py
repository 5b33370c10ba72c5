"""Personal data: find e-mail addresses, phone numbers, Chinese resident identity numbers, payment cards,
IP addresses and API-key-like secrets, and replace each with a typed placeholder such as ``<EMAIL>``.

A regular expression proposes a span and a validator must accept it, which is what keeps ordinary numbers,
dates and version strings out: an identity number needs a real birth date and the ISO 7064 MOD 11-2 check
digit (GB 11643-1999), a card number the Luhn check digit, an issuer prefix and a card-like grouping (4-4-4-4,
4-6-5) or, written as one run of digits, either a card word ("card", "visa", "卡"...) just before it or an
issuer's exact prefix and length (``ISSUERS``: Visa 4 and MasterCard 51-55 / 2221-2720 with 16 digits, Amex
34 / 37 with 15, Discover 6011 / 644-649 / 65, JCB 3528-3589 with 16, UnionPay 62 with 16 or 19; ISO/IEC
7812-1 numbering as the networks publish it) with no letter touching it: a random digit run passes the Luhn
check one time in ten and carries such a prefix rarely, so order numbers, ISBNs and phone numbers stay. An
IPv4 address four octets <= 255 and no "version" before it, an IPv6 address must parse. Phone numbers are
E.164 numbers written with "+", Chinese mobile (1[3-9] + 9 digits) and landline (0xx-xxxxxxxx) numbers, and
North American numbers with separators. Kinds are tried in the order of ``KINDS``; a span that overlaps an
earlier kind's span is not reported twice (the digits inside an e-mail address are not a phone number).
ASCII lookarounds rather than ``\\b`` delimit spans, because in Chinese text a digit touches a Han character.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections import Counter
from typing import NamedTuple
from collections.abc import Callable

_SECRET = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]+?-----END [A-Z ]*PRIVATE KEY-----"
    r"|(?<![A-Za-z0-9_-])(?:"
    r"sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"  # OpenAI / Anthropic
    r"|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe
    r"|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}"  # GitHub
    r"|glpat-[A-Za-z0-9_-]{20,}"  # GitLab
    r"|hf_[A-Za-z0-9]{30,}"  # Hugging Face
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"  # AWS access key id
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API key
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"  # JSON Web Token
    r")(?![A-Za-z0-9_-])"
    r"|(?i:api[_-]?key|secret[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret|password|passwd)"
    r"[\"']?\s*[:=]\s*[\"']?(?P<value>[A-Za-z0-9_\-+/=.!@#$%^&*]{8,})"
)
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![A-Za-z0-9-])"
)
_CN_ID = re.compile(r"(?<![0-9A-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}[01]\d[0-3]\d\d{3}[\dXx](?![0-9A-Za-z])")
_CARD = re.compile(r"(?<![\d.,-])\d(?:[ -]?\d){12,18}(?![\d]|[.,-]\d)")
_PHONE = re.compile(
    r"(?<![0-9A-Za-z_+])\+\d(?:[ .()-]{0,2}\d){7,14}(?!\d)"  # E.164 with +country code
    r"|(?<![\d.+-])(?:86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?![\d]|[.-]\d)"  # Chinese mobile
    r"|(?<![\d.-])0\d{2,3}-\d{7,8}(?![\d]|[.-]\d)"  # Chinese landline
    # North American
    r"|(?<![0-9A-Za-z_.+-])(?:\([2-9]\d{2}\) ?|[2-9]\d{2}([-.]))[2-9]\d{2}(?(1)\1|-)\d{4}(?![\d]|[.-]\d)"
)
_IPV4 = re.compile(
    r"(?<![0-9A-Za-z_.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"(?![0-9A-Za-z_]|\.\d)"
)
_IPV6 = re.compile(r"(?<![0-9A-Za-z_:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.\d{1,3}){0,3}(?![0-9A-Za-z_:])")
_VERSION_WORDS = ("version", "ver.", "release", "build", "版本")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CARD_PREFIX = re.compile(r"4|5[1-5]|2[2-7]|3[47]|3[068]|35|6")
_CARD_WORDS = re.compile(r"(?i:card|credit|debit|visa|master|amex|payment|account|pan\b)|卡")
# (issuer, first digits as a range over that many digits, lengths): what an unbroken run needs without a card word.
ISSUERS: tuple[tuple[str, int, int, tuple[int, ...]], ...] = (
    ("visa", 4, 4, (16,)), ("mastercard", 51, 55, (16,)), ("mastercard", 2221, 2720, (16,)),
    ("amex", 34, 34, (15,)), ("amex", 37, 37, (15,)), ("discover", 6011, 6011, (16,)),
    ("discover", 644, 649, (16,)), ("discover", 65, 65, (16,)), ("jcb", 3528, 3589, (16,)),
    ("unionpay", 62, 62, (16, 19)),
)
_LETTER_EDGE = re.compile(r"[A-Za-z_]")


class Span(NamedTuple):
    kind: str
    start: int
    end: int


def _secret(m: re.Match, text: str) -> tuple[int, int] | None:
    if m.group("value") is None:
        return m.span()
    value = m.group("value")  # key = value: only a token-like value (letters and digits mixed, or long)
    token_like = (re.search(r"\d", value) and re.search(r"[A-Za-z]", value)) or len(value) >= 20
    return m.span("value") if token_like else None


def _whole(m: re.Match, text: str) -> tuple[int, int] | None:
    return m.span()


def _cn_id(m: re.Match, text: str) -> tuple[int, int] | None:
    s = m.group().upper()
    try:
        datetime.date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return None
    check = "10X98765432"[sum(int(d) * w for d, w in zip(s[:17], _ID_WEIGHTS)) % 11]
    return m.span() if s[17] == check else None


def _card(m: re.Match, text: str) -> tuple[int, int] | None:
    s = m.group()
    digits = re.sub(r"\D", "", s)
    groups = [len(g) for g in re.split(r"[ -]", s)]
    if len(groups) == 1:  # an unbroken digit run: a card word before it, or an issuer's exact prefix and length
        card_like = bool(_CARD_WORDS.search(text, max(0, m.start() - 40), m.start())) or (
            issuer(digits) is not None and not _touches_letter(text, m.start(), m.end()))
    else:
        card_like = len(set(re.findall(r"[ -]", s))) == 1 and (
            groups in ([4, 6, 5], [4, 6, 4]) or (all(g == 4 for g in groups[:-1]) and 1 <= groups[-1] <= 4))
    return m.span() if card_like and _CARD_PREFIX.match(digits) and luhn_ok(digits) else None


def issuer(digits: str) -> str | None:
    """The card network whose prefix and length ``digits`` has (``ISSUERS``), or None."""
    for name, low, high, lengths in ISSUERS:
        width = len(str(low))
        if len(digits) in lengths and low <= int(digits[:width]) <= high:
            return name
    return None


def _touches_letter(text: str, start: int, end: int) -> bool:
    """True when an ASCII letter or underscore sits right before or after text[start:end] (SN4111..., ...x)."""
    return bool((start and _LETTER_EDGE.match(text[start - 1])) or (end < len(text) and _LETTER_EDGE.match(text[end])))


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check that every payment card number satisfies (ISO/IEC 7812-1)."""
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _ipv4(m: re.Match, text: str) -> tuple[int, int] | None:
    before = text[max(0, m.start() - 12) : m.start()].lower()
    return None if any(v in before for v in _VERSION_WORDS) else m.span()


def _ipv6(m: re.Match, text: str) -> tuple[int, int] | None:
    try:
        ipaddress.IPv6Address(m.group())
    except ValueError:
        return None
    groups = [g for g in re.split(r"[:.]", m.group()) if g]
    return m.span() if len(groups) >= 2 and max(map(len, groups)) >= 2 else None  # not "A::B" (C++)


Validator = Callable[[re.Match, str], "tuple[int, int] | None"]
DETECTORS: dict[str, tuple[re.Pattern, Validator]] = {
    "secret": (_SECRET, _secret),
    "email": (_EMAIL, _whole),
    "cn_id": (_CN_ID, _cn_id),
    "card": (_CARD, _card),
    "phone": (_PHONE, _whole),
    "ipv6": (_IPV6, _ipv6),
    "ipv4": (_IPV4, _ipv4),
}
KINDS = tuple(DETECTORS)


def find(text: str, kinds: tuple[str, ...] | list[str] = KINDS) -> list[Span]:
    """All personal-data spans in ``text``, in text order, no two overlapping."""
    spans: list[Span] = []
    for kind in (k for k in KINDS if k in kinds):
        pattern, validate = DETECTORS[kind]
        for m in pattern.finditer(text):
            span = validate(m, text)
            if span and not any(s.start < span[1] and span[0] < s.end for s in spans):
                spans.append(Span(kind, *span))
    return sorted(spans, key=lambda s: s.start)


def scrub(text: str, kinds: tuple[str, ...] | list[str] = KINDS) -> tuple[str, Counter]:
    """Replace every span found by ``find`` with ``<KIND>``; return the new text and the count per kind."""
    spans = find(text, kinds)
    if not spans:
        return text, Counter()
    parts, pos = [], 0
    for s in spans:
        parts += [text[pos : s.start], f"<{s.kind.upper()}>"]
        pos = s.end
    parts.append(text[pos:])
    return "".join(parts), Counter(s.kind for s in spans)
