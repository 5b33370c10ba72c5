"""A test corpus for ``lmstack clean`` whose truth is known: what was injected, copied, edited and planted.

Base pages come from the built-in synthetic generator (``lmstack.data.synth.generate_documents``: short
English/Chinese texts, joined into pages of a few paragraphs) and from real text in ``../shared/data``
(Shakespeare, Song ci, the Analects, CSL abstracts, DialogSum, CMRC 2018, SQuAD, WMT16 news, HH-RLHF;
skipped when absent, never copied into the repo). On top of them, each record's ``truth`` field says what
was done to it: an exact duplicate (with case/whitespace/line-ending noise), a near-duplicate (5-30% token
edits, scattered or in one block), boilerplate, low quality, or another language; and ``pii`` lists the
planted personal data as [kind, start, end] spans. The truth fields pass through ``lmstack clean``
unchanged, so benchmarks read them back from its output.

    python bench/clean_corpus.py --out /tmp/clean_corpus.jsonl --docs 20000
"""

from __future__ import annotations

import argparse
import json
import random
import string
from pathlib import Path
from collections.abc import Iterator

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"

# --- base pages ------------------------------------------------------------------------------------------


def synth_pages(seed: int, scale: float) -> Iterator[dict]:
    """Pages of 2-12 consecutive same-language synthetic documents."""
    from lmstack.data.synth import generate_documents

    rng = random.Random(seed)
    buffers: dict[str, list[str]] = {"en": [], "zh": []}
    for doc in generate_documents(seed, scale):
        buf = buffers.setdefault(doc["lang"], [])
        buf.append(doc["text"])
        if len(buf) >= rng.randint(2, 12):
            yield {"text": "\n\n".join(buf), "lang": doc["lang"], "origin": f"synth/{doc['kind']}"}
            buf.clear()


def real_pages() -> Iterator[dict]:
    """Real text from ../shared/data, cut into pages; sources that are missing are skipped."""
    def chunks(paragraphs: list[str], size: int) -> Iterator[str]:
        page: list[str] = []
        for p in paragraphs:
            page.append(p)
            if sum(map(len, page)) >= size:
                yield "\n\n".join(page)
                page = []
        if page:
            yield "\n\n".join(page)

    def load(rel: str):
        path = SHARED / rel
        if not path.exists():
            return None
        if path.suffix == ".json":
            return json.loads(path.read_text(encoding="utf-8"))
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return path.read_text(encoding="utf-8")

    sources = []
    if (t := load("tinyshakespeare/input.txt")):
        sources.append(("shakespeare", "en", chunks(t.split("\n\n"), 2500)))
    if (folder := SHARED / "chinese_poetry" / "songci").exists():
        ci = [c for f in sorted(folder.glob("*.json")) for c in json.loads(f.read_text(encoding="utf-8"))]
        sources.append(("songci", "zh", chunks(["\n".join(c["paragraphs"]) for c in ci], 800)))
    if (d := load("chinese_poetry/lunyu/lunyu.json")):
        sources.append(("lunyu", "zh", chunks([p for c in d for p in c["paragraphs"]], 800)))
    if (t := load("csl_title_summarisation_zh/dev.tsv")):
        sources.append(("csl", "zh", chunks([row.split("\t")[1] for row in t.splitlines() if "\t" in row], 900)))
    if (d := load("dialogsum/dialogsum.dev.jsonl")):
        sources.append(("dialogsum", "en", (r["dialogue"] for r in d)))
    if (d := load("cmrc2018/cmrc2018_trial.json")):
        sources.append(("cmrc2018", "zh", (p["context"] for a in d["data"] for p in a["paragraphs"])))
    if (d := load("squad_v2_dev_subset_haystack/small.json")):
        sources.append(("squad", "en", (p["context"] for a in d["data"] for p in a["paragraphs"])))
    if (t := load("wmt16_en_fi/newstest2016-enfi.en")):
        sources.append(("wmt16_en", "en", chunks(t.splitlines(), 1500)))
    if (d := load("hh_rlhf_harmless_base/test.jsonl")):
        sources.append(("hh_rlhf", "en", (r["chosen"].strip() for r in d)))
    if (d := load("gsm8k/train.jsonl")):
        sources.append(("gsm8k", "en", chunks([r["question"] + "\n" + r["answer"] for r in d], 1500)))
    while sources:  # round robin, so every source shows up early
        for entry in list(sources):
            name, lang, pages = entry
            text = next(pages, None)
            if text is None:
                sources.remove(entry)
            else:
                yield {"text": text, "lang": lang, "origin": f"real/{name}"}


# --- what gets injected ----------------------------------------------------------------------------------


def edit(text: str, lang: str, rate: float, rng: random.Random, block: bool) -> str:
    """Edit ``rate`` of the tokens (words; characters for Chinese): substitute, delete or insert.

    ``block`` puts every edit in one contiguous run, which leaves most shingles intact; otherwise the
    edits are scattered, which breaks up to n shingles each.
    """
    if lang == "zh":
        tokens, joiner = list(text), ""
    else:
        tokens, joiner = text.split(" "), " "
    vocab = tokens[:] or ["x"]
    n = max(1, round(rate * len(tokens)))
    if block:
        start = rng.randrange(max(len(tokens) - n, 1))
        positions = list(range(start, min(start + n, len(tokens))))
    else:
        positions = sorted(rng.sample(range(len(tokens)), min(n, len(tokens))))
    for pos in reversed(positions):
        op = rng.random()
        if op < 0.5:
            tokens[pos] = rng.choice(vocab)
        elif op < 0.75:
            del tokens[pos]
        else:
            tokens.insert(pos, rng.choice(vocab))
    return joiner.join(tokens)


def noisy_copy(text: str, rng: random.Random) -> str:
    """An exact duplicate after normalisation: other line endings, doubled spaces, trailing blanks."""
    choice = rng.randrange(3)
    if choice == 0:
        return text.replace("\n", "\r\n")
    if choice == 1:
        return text.replace(" ", "  ", 3) + "  \n"
    return "\ufeff" + text


BOILERPLATE_EN = [
    "This website uses cookies to improve your experience.", "Please enable JavaScript to view this page.",
    "Read our Privacy Policy and Terms of Use.", "Accept all cookies", "Sign in | Register | Help",
    "Copyright 2024 All rights reserved", "Share on Facebook Share on Twitter",
]
BOILERPLATE_ZH = ["本网站使用Cookie以改善您的体验。", "请启用JavaScript以查看此页面。", "版权所有 2024",
                  "登录 | 注册 | 帮助"]


def low_quality(rng: random.Random, lang: str, page: str) -> tuple[str, str]:
    """(kind, text) of one low-quality document."""
    kind = rng.choice(["word_salad", "repeated_lines", "bullets", "symbols", "short", "numbers", "ellipsis",
                       "lorem", "code", "boilerplate"])
    words = page.split() if lang == "en" else list(page.replace("\n", ""))
    words = words or ["x"]
    if kind == "word_salad":
        text = " ".join(rng.choice(words) for _ in range(rng.randint(60, 300)))
    elif kind == "repeated_lines":
        line = " ".join(rng.choice(words) for _ in range(8))
        text = "\n".join([line] * rng.randint(8, 30))
    elif kind == "bullets":
        text = "\n".join(f"• {' '.join(rng.choice(words) for _ in range(6))}" for _ in range(rng.randint(10, 40)))
    elif kind == "symbols":
        text = " ".join(f"#{rng.choice(words)}" for _ in range(rng.randint(60, 200)))
    elif kind == "short":
        text = " ".join(words[: rng.randint(3, 20)])
    elif kind == "numbers":
        text = " ".join(str(rng.randint(0, 10**6)) for _ in range(rng.randint(60, 200)))
    elif kind == "ellipsis":
        text = "\n".join(" ".join(rng.choice(words) for _ in range(6)) + "..." for _ in range(rng.randint(10, 30)))
    elif kind == "lorem":
        text = page + "\n\nLorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor."
    elif kind == "code":
        text = "function init() {\n  var x = document.getElementById('main');\n  return x;\n}\n" + page
    else:
        text = "\n".join(rng.choice(BOILERPLATE_EN + BOILERPLATE_ZH) for _ in range(rng.randint(5, 20)))
    return kind, text


# --- personal data ---------------------------------------------------------------------------------------

FIRST = ["john", "mary", "wei", "li", "anna", "omar", "sofia", "kenji", "zhang.san", "lucas", "emma", "raj"]
DOMAINS = ["example.com", "mail.example.org", "163.com", "qq.com", "company.co.uk", "uni-heidelberg.de", "gmail.com"]
CN_REGIONS = ["110105", "310101", "440305", "510104", "330106", "420111", "120101", "650102"]


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + _digits(rng, length - len(prefix) - 1)
    total = 0
    for i, d in enumerate(reversed(body)):  # the check digit will sit at position 0, so body starts doubled
        n = int(d) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return body + str((10 - total % 10) % 10)


def make_pii(kind: str, rng: random.Random) -> str:
    if kind == "email":
        return f"{rng.choice(FIRST)}{rng.choice(['', '.', '_'])}{rng.randint(1, 999)}@{rng.choice(DOMAINS)}"
    if kind == "phone":
        d = lambda n: _digits(rng, n)  # noqa: E731
        # NANP area code / exchange: 2-9 then 2 digits
        a = lambda: str(rng.randint(2, 9)) + d(2)  # noqa: E731
        mobile = f"1{rng.choice('3456789')}{d(9)}"
        return rng.choice([
            f"+1 ({a()}) {a()}-{d(4)}", f"+1-{a()}-{a()}-{d(4)}", f"+44 20 {d(4)} {d(4)}", f"+49 30 {d(8)}",
            f"+33 1 {d(2)} {d(2)} {d(2)} {d(2)}", f"+86 {mobile[:3]} {mobile[3:7]} {mobile[7:]}",
            f"+81 3-{d(4)}-{d(4)}", f"+61 2 {d(4)} {d(4)}", f"+91 {d(5)} {d(5)}", f"({a()}) {a()}-{d(4)}",
            f"{a()}-{a()}-{d(4)}", f"{a()}.{a()}.{d(4)}", mobile, f"{mobile[:3]}-{mobile[3:7]}-{mobile[7:]}",
            f"{mobile[:3]} {mobile[3:7]} {mobile[7:]}", f"+86{mobile}", f"010-{rng.randint(2, 8)}{d(7)}",
            f"0755-{rng.randint(2, 8)}{d(6)}"])
    if kind == "cn_id":
        while True:
            try:
                import datetime
                birth = datetime.date(rng.randint(1950, 2005), rng.randint(1, 12), rng.randint(1, 28))
                break
            except ValueError:
                continue
        body = f"{rng.choice(CN_REGIONS)}{birth:%Y%m%d}{_digits(rng, 3)}"
        weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
        return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, weights)) % 11]
    if kind == "card":
        brand = rng.choice(["visa", "mc", "amex", "unionpay", "discover"])
        number = {"visa": lambda: luhn_complete("4", 16, rng),
                  "mc": lambda: luhn_complete(str(rng.randint(51, 55)), 16, rng),
                  "amex": lambda: luhn_complete(rng.choice(["34", "37"]), 15, rng),
                  "unionpay": lambda: luhn_complete("62", rng.choice([16, 19]), rng),
                  "discover": lambda: luhn_complete("6011", 16, rng)}[brand]()
        sep = rng.choice(["", " ", "-"])
        if not sep:
            return number
        if brand == "amex":
            return sep.join([number[:4], number[4:10], number[10:]])
        return sep.join(number[i : i + 4] for i in range(0, len(number), 4))
    if kind == "ipv4":
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    if kind == "ipv6":
        groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
        return rng.choice([":".join(groups), f"2001:db8::{groups[0]}:{groups[1]}", f"fe80::{groups[2]}:{groups[3]}"])
    alnum = string.ascii_letters + string.digits
    r = lambda n, chars=alnum: "".join(rng.choice(chars) for _ in range(n))  # noqa: E731
    return rng.choice([f"sk-proj-{r(40)}", f"ghp_{r(36)}", f"AKIA{r(16, string.ascii_uppercase + string.digits)}",
                       f"AIza{r(35)}", f"xoxb-{_digits(rng, 12)}-{r(24)}", f"hf_{r(34)}", f"sk_live_{r(24)}"])


CARRIERS = {
    "en": {"email": ["You can write to {} with questions.", "Contact: {}"],
           "phone": ["Call me on {} after 6 pm.", "Phone: {}"],
           "cn_id": ["Her resident ID is {}."], "card": ["The card {} expires 08/27.", "Paid with card {}."],
           "ipv4": ["The server at {} stopped responding.", "Requests came from {} at 14:05."],
           "ipv6": ["The host {} is reachable again."],
           "secret": ["Use the token {} to call the API.", "export API_TOKEN={}"]},
    "zh": {"email": ["邮箱：{}，欢迎来信。", "请发邮件到{}联系我们。"],
           "phone": ["我的手机号是{}，有事请联系。", "联系电话：{}"],
           "cn_id": ["身份证号码：{}。", "他的身份证号是{}，请核对。"], "card": ["银行卡号{}已绑定。"],
           "ipv4": ["服务器地址为{}。"], "ipv6": ["主机{}已恢复访问。"], "secret": ["密钥是{}，请勿外泄。"]},
}
PII_KINDS = ("email", "phone", "cn_id", "card", "ipv4", "ipv6", "secret")


def plant_pii(text: str, lang: str, rng: random.Random, k: int) -> tuple[str, list[list]]:
    """Insert ``k`` sentences carrying personal data between paragraphs; return text and [kind, start, end]."""
    paras = text.split("\n\n")
    inserts = sorted((rng.randrange(len(paras) + 1), rng.choice(PII_KINDS)) for _ in range(k))
    out, spans, pos = [], [], 0
    for i, para in enumerate(paras + [None]):
        for at, kind in inserts:
            if at == i:
                value = make_pii(kind, rng)
                sentence = rng.choice(CARRIERS[lang][kind])
                start = pos + sentence.index("{}")
                spans.append([kind, start, start + len(value)])
                out.append(sentence.format(value))
                pos += len(out[-1]) + 2
        if para is not None:
            out.append(para)
            pos += len(para) + 2
    return "\n\n".join(out), spans


# --- a PII-free control set of ordinary text with numbers ------------------------------------------------

def control_sentences(rng: random.Random, n: int) -> Iterator[str]:
    """Sentences full of numbers, dates, times, prices, versions and codes, and no personal data."""
    months = ["January", "March", "June", "September", "December"]
    templates = [
        lambda: (f"On {rng.randint(2000, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} at "
                 f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} the job finished."),
        lambda: (f"The meeting moved to {rng.randint(1, 28)}/{rng.randint(1, 12)}/{rng.randint(2000, 2030)}, room "
                 f"{rng.randint(100, 999)}."),
        lambda: (f"Revenue grew {rng.randint(1, 99)}.{rng.randint(0, 9)}% to ${rng.randint(1, 999):,}"
                 f",{rng.randint(0, 999):03d}.{rng.randint(0, 99):02d} in {rng.choice(months)} "
                 f"{rng.randint(1990, 2030)}."),
        lambda: (f"Upgrade to version {rng.randint(0, 12)}.{rng.randint(0, 30)}.{rng.randint(0, 99)} or "
                 f"v{rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)} before Friday."),
        lambda: (f"Windows build 10.0.{rng.randint(10000, 22999)}.{rng.randint(1, 999)} and Chrome "
                 f"{rng.randint(90, 130)}.0.{rng.randint(1000, 6999)}.{rng.randint(10, 200)} were tested."),
        lambda: (f"The population reached {rng.randint(1, 1400):,},{rng.randint(0, 999):03d},{rng.randint(0, 999):03d} "
                 f"by {rng.randint(1900, 2030)}."),
        lambda: (f"ISBN 978-{rng.randint(0, 9)}-{rng.randint(10, 99)}-{rng.randint(100000, 999999)}-{rng.randint(0, 9)}"
                 f" was reprinted on page {rng.randint(1, 400)}."),
        lambda: (f"Order #{rng.randint(2020, 2030)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
                 f"-{rng.randint(1, 9999):04d} weighed {rng.randint(1, 90)}.{rng.randint(0, 99)} kg."),
        lambda: (f"The final score was {rng.randint(0, 9)}:{rng.randint(0, 9)} after {rng.randint(90, 120)} minutes; "
                 f"pi is about 3.14159."),
        lambda: (f"Ship it to postcode {rng.randint(10000, 99999)} within {rng.randint(2, 30)} days; it costs "
                 f"€{rng.randint(1, 500)}.{rng.randint(0, 99):02d}."),
        lambda: (f"{rng.randint(2000, 2030)}年{rng.randint(1, 12)}月{rng.randint(1, 28)}日，"
                 f"全市GDP增长{rng.randint(1, 9)}.{rng.randint(0, 9)}%，人口{rng.randint(100, 2000)}万。"),
        lambda: (f"本次共售出{rng.randint(1000, 9999999)}件，总价{rng.randint(1, 999)},{rng.randint(0, 999):03d}元，"
                 f"编号{rng.randint(2020, 2030)}{_digits(rng, 6)}。"),
        lambda: (f"版本{rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 20)}于{rng.randint(1, 12)}"
                 f"月{rng.randint(1, 28)}日{rng.randint(0, 23)}:{rng.randint(10, 59)}发布，"
                 f"邮编{rng.randint(100000, 899999)}。"),
        lambda: (f"The coordinates 48.{_digits(rng, 4)}, 2.{_digits(rng, 4)} and a ratio of {rng.randint(1, 9)}"
                 f":{rng.randint(1, 9)} were logged at {rng.randint(1, 12)}:{rng.randint(10, 59)} pm."),
        lambda: (f"Invoice {rng.randint(10**7, 10**8 - 1)} of {rng.randint(10**11, 10**12 - 1)} units and serial "
                 f"{rng.randint(10**15, 10**16 - 1)} were archived."),
        lambda: (f"Matthew {rng.randint(1, 28)}:{rng.randint(1, 40)} and pages {rng.randint(1, 200)}"
                 f"-{rng.randint(201, 400)} cover it."),
    ]
    for _ in range(n):
        yield " ".join(rng.choice(templates)() for _ in range(rng.randint(3, 8)))


# --- the corpus ------------------------------------------------------------------------------------------

def build(seed: int, n_docs: int, synth_scale: float = 1.0, real: bool = True) -> Iterator[dict]:
    """Yield ``n_docs`` records ``{"text", "lang", "origin", "truth", "pii"}`` in corpus order."""
    rng = random.Random(seed)
    bases = _base_stream(seed, synth_scale, real)
    emitted: list[dict] = []  # earlier originals, for copies
    for i in range(n_docs):
        r = rng.random()
        if emitted and r < 0.05:
            src = rng.choice(emitted)
            rec = {**src, "text": noisy_copy(src["text"], rng), "truth": {"inject": "exact_dup", "of": src["index"]}}
        elif emitted and r < 0.15:
            src, rate, block = rng.choice(emitted), rng.uniform(0.05, 0.30), rng.random() < 0.5
            rec = {**src, "text": edit(src["text"], src["lang"], rate, rng, block),
                   "truth": {"inject": "near_dup", "of": src["index"], "rate": round(rate, 3), "block": block}}
        elif r < 0.22:
            base = next(bases)
            kind, text = low_quality(rng, base["lang"], base["text"])
            rec = {**base, "text": text, "truth": {"inject": "low_quality", "type": kind}}
        elif r < 0.24:
            fi = _finnish(rng)
            rec = {"text": fi, "lang": "fi", "origin": "real/wmt16_fi" if fi else "none",
                   "truth": {"inject": "other_language"}}
            if not fi:
                continue
        elif r < 0.28:
            base = next(bases)
            lines = BOILERPLATE_EN if base["lang"] == "en" else BOILERPLATE_ZH
            rec = {**base, "text": base["text"] + "\n" + "\n".join(rng.sample(lines, 3)),
                   "truth": {"inject": "boilerplate_lines"}}
        else:
            rec = {**next(bases), "truth": {"inject": "none"}}
        rec["pii"] = []
        if rng.random() < 0.15 and rec["truth"]["inject"] in ("none", "boilerplate_lines"):
            rec["text"], rec["pii"] = plant_pii(rec["text"], rec["lang"], rng, rng.randint(1, 4))
        rec["index"] = i
        if rec["truth"]["inject"] == "none":
            emitted.append(rec)
        yield {k: rec[k] for k in ("text", "lang", "origin", "truth", "pii", "index")}


_FINNISH: list[str] = []


def _finnish(rng: random.Random) -> str:
    if not _FINNISH and (SHARED / "wmt16_en_fi" / "newstest2016-enfi.fi").exists():
        _FINNISH.extend((SHARED / "wmt16_en_fi" / "newstest2016-enfi.fi").read_text(encoding="utf-8").splitlines())
    start = rng.randrange(max(len(_FINNISH) - 12, 1)) if _FINNISH else 0
    return " ".join(_FINNISH[start : start + 12])


def _base_stream(seed: int, synth_scale: float, real: bool) -> Iterator[dict]:
    """Real pages first mixed into synthetic ones, then more synthetic worlds for as long as needed."""
    rng = random.Random(seed + 1)
    real_iter = real_pages() if real else iter(())
    world = seed
    while True:
        for page in synth_pages(world, synth_scale):
            if rng.random() < 0.3:
                page = next(real_iter, page)
            yield page
        world += 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-real", action="store_true", help="synthetic pages only")
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    n_bytes = 0
    with open(args.out, "w", encoding="utf-8") as f:
        for rec in build(args.seed, args.docs, real=not args.no_real):
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n_bytes += len(rec["text"].encode())
    print(json.dumps({"out": str(args.out), "docs": args.docs, "text_mb": round(n_bytes / 2**20, 1)}))


if __name__ == "__main__":
    main()
