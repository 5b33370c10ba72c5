"""What ``lmstack clean`` keeps of clean real text and removes of junk, per rule, under both profiles.

The probe: real text from ``../shared/data`` (CSL abstracts, CMRC 2018 contexts, DialogSum dialogues,
tinyshakespeare pages, LLaMA-Factory alpaca outputs; each a corpus of its own, never copied into the repo)
plus, generated here deterministically, eight kinds of junk in English and Chinese (boilerplate / cookie
notices, keyword spam, lorem ipsum / repeated lines, navigation menus, code / markup dumps, symbol noise,
mojibake that no repair can undo, very short fragments), exact and near duplicates of real documents, and
real documents with planted personal data. Every record carries ``probe`` (its corpus or junk kind), which
``lmstack clean`` passes through, so the outputs say what happened to each. The probe runs through
``clean`` with ``--profile web`` (C4 / Gopher as published) and ``--profile curated`` (the default); the
script prints, and writes as markdown, documents kept per corpus and removed per junk kind, and the rules
behind every removal, web against curated. Skips (exit 0) without ../shared/data.

    python bench/clean_probe.py --out /tmp/clean_probe            # ~1 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path

from lmstack.data.clean.config import CleanConfig
from lmstack.data.clean.pipeline import clean

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
PROFILES = ("web", "curated")


# --- real text -------------------------------------------------------------------------------------------

def real_corpora(limit: int, rng: random.Random) -> dict[str, list[str]]:
    """Corpus name -> documents (at most ``limit``, a seeded sample); missing sources are left out."""
    out: dict[str, list[str]] = {}
    csl = SHARED / "csl_title_summarisation_zh" / "dev.tsv"
    if csl.exists():
        out["csl_abstracts"] = [r.split("\t")[1] for r in csl.read_text(encoding="utf-8").splitlines() if "\t" in r]
    cmrc = SHARED / "cmrc2018" / "cmrc2018_trial.json"
    if cmrc.exists():
        data = json.loads(cmrc.read_text(encoding="utf-8"))["data"]
        out["cmrc_contexts"] = list(dict.fromkeys(p["context"] for a in data for p in a["paragraphs"]))
    dialogsum = SHARED / "dialogsum" / "dialogsum.dev.jsonl"
    if dialogsum.exists():
        out["dialogsum"] = [json.loads(line)["dialogue"] for line in dialogsum.read_text(encoding="utf-8").splitlines()]
    shakespeare = SHARED / "tinyshakespeare" / "input.txt"
    if shakespeare.exists():  # pages of ~2,000 characters, cut at speeches (the play, not one speech, is a text)
        pages, page = [], []
        for speech in shakespeare.read_text(encoding="utf-8").split("\n\n"):
            page.append(speech)
            if sum(map(len, page)) >= 2000:
                pages.append("\n\n".join(page))
                page = []
        out["shakespeare_pages"] = pages
    for lang in ("zh", "en"):
        alpaca = SHARED / "llamafactory_demo" / f"alpaca_{lang}_demo.json"
        if alpaca.exists():
            out[f"alpaca_{lang}_outputs"] = [r["output"] for r in json.loads(alpaca.read_text(encoding="utf-8"))]
    return {k: (rng.sample(v, limit) if len(v) > limit else v) for k, v in out.items()}


# --- junk, eight kinds -----------------------------------------------------------------------------------

COOKIE_EN = ["We use cookies to improve your experience on our site.", "By continuing to browse, you agree to our "
             "Privacy Policy and Terms of Use.", "Accept all cookies", "Manage preferences", "Reject non-essential",
             "This website uses cookies for analytics and personalised ads.", "Learn more about our cookie policy."]
COOKIE_ZH = ["本网站使用Cookie来改善您的浏览体验。", "继续浏览即表示您同意我们的隐私政策和使用条款。", "接受全部Cookie",
             "管理偏好设置", "了解更多", "我们使用cookies进行统计分析。"]
KEYWORDS_EN = ["cheap", "flights", "hotel", "deals", "best", "price", "discount", "buy", "online", "free", "shipping"]
KEYWORDS_ZH = ["便宜", "机票", "特价", "酒店", "优惠", "最低价", "免费", "包邮", "正品", "秒杀", "团购"]
MENU_EN = ["Home", "About Us", "Products", "Services", "Blog", "Contact", "Login", "Register", "FAQ", "Careers"]
MENU_ZH = ["首页", "关于我们", "产品中心", "新闻动态", "联系我们", "登录", "注册", "帮助中心", "网站地图"]
FRAGMENTS = ["Read more", "Posted by admin", "Share this:", "Loading...", "Page 2 of 17", "Click here to subscribe",
             "Continue reading →", "Tags: news, update", "点击查看更多", "上一篇 下一篇", "返回顶部",
             "发表于 2021-03-04", "分享到：微博 微信", "加载中……", "Copyright © 2024", "All rights reserved."]
LOREM = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et "
         "dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris.")
CODE = [
    "function init() {\n  var el = document.getElementById('main');\n  el.addEventListener('click', function (e) {\n"
    "    e.preventDefault();\n    load(el.dataset.url);\n  });\n}\n",
    "body { margin: 0; padding: 0; }\n.nav { display: flex; }\n.nav a { color: #333; text-decoration: none; }\n",
    '{"id": 1024, "name": "widget", "tags": ["a", "b"], "price": {"amount": 9.99, "currency": "USD"}}\n',
    '<div class="header"><ul class="menu"><li><a href="/">Home</a></li><li><a href="/about">About</a></li>'
    '</ul></div>\n<script src="/static/app.js"></script>\n',
]
SYMBOLS = list("#@$%^&*~|+=<>/\\") + ["***", "###", ">>>", "---", "===", "★", "☆", "◆", "■", "→"]


def junk(kind: str, rng: random.Random) -> str:
    zh = rng.random() < 0.5
    if kind == "boilerplate":
        lines = COOKIE_ZH if zh else COOKIE_EN
        return "\n".join(rng.sample(lines, rng.randint(3, len(lines))))
    if kind == "keyword_spam":
        words = KEYWORDS_ZH if zh else KEYWORDS_EN
        return ("" if zh else " ").join(rng.choice(words) for _ in range(rng.randint(60, 200)))
    if kind == "lorem_repeated":
        if rng.random() < 0.5:
            return "\n\n".join([LOREM] * rng.randint(1, 4))
        line = rng.choice(["Buy now and save big on every order today!", "限时抢购，全场五折，先到先得！",
                           "Subscribe to our newsletter for the latest news.", "欢迎光临本店，祝您购物愉快。"])
        return "\n".join([line] * rng.randint(6, 30))
    if kind == "navigation":
        items = MENU_ZH if zh else MENU_EN
        chosen = rng.sample(items, rng.randint(4, len(items)))
        return (" | " if rng.random() < 0.5 else "\n").join(chosen)
    if kind == "code_markup":
        return "\n".join(rng.choice(CODE) for _ in range(rng.randint(1, 4)))
    if kind == "symbol_noise":
        return " ".join(rng.choice(SYMBOLS) * rng.randint(1, 4) for _ in range(rng.randint(30, 150)))
    if kind == "mojibake":  # GBK read as latin-1: ftfy (rightly) cannot undo it
        text = rng.choice(["这条河谷的历史很长，生活在那里的人们用许多方式讲述它。农民和商人带着家人来到河谷。",
                           "本文研究了城市交通信号的优化控制方法，提出了一种基于强化学习的模型。"])
        return (text * rng.randint(1, 3)).encode("gbk").decode("latin-1")
    if kind == "short_fragment":
        return rng.choice(FRAGMENTS)
    raise ValueError(kind)


JUNK_KINDS = ("boilerplate", "keyword_spam", "lorem_repeated", "navigation", "code_markup", "symbol_noise",
              "mojibake", "short_fragment")


# --- duplicates and personal data --------------------------------------------------------------------------

def near_copy(text: str, rng: random.Random) -> str:
    """A near duplicate: one short contiguous edit (about 3% of the characters) somewhere in the text."""
    n = max(1, len(text) // 33)
    start = rng.randrange(max(len(text) - n, 1))
    return text[:start] + text[start : start + n][::-1] + text[start + n :]


def plant_pii(text: str, rng: random.Random) -> tuple[str, list[str]]:
    """``text`` with an e-mail address, a phone number and an unbroken card number appended."""
    body = "4" + "".join(rng.choice("0123456789") for _ in range(14))
    card = next(body + d for d in "0123456789" if _luhn(body + d))
    email = f"{rng.choice(['wei.zhang', 'mary', 'li_na'])}{rng.randint(1, 99)}@example.com"
    phone = "13" + "".join(rng.choice("0123456789") for _ in range(9))
    return f"{text}\n\nContact {email} or {phone}; order paid with {card}.", [email, phone, card]


def _luhn(digits: str) -> bool:
    total = sum((n * 2 - 9 if n * 2 > 9 else n * 2) if i % 2 else n for i, n in enumerate(map(int, reversed(digits))))
    return total % 10 == 0


def build_probe(path: Path, limit: int, junk_per_kind: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    corpora = real_corpora(limit, rng)
    if not corpora:
        return {}
    records = [{"text": t, "probe": name} for name, docs in corpora.items() for t in docs]
    for r in rng.sample(records, min(50, len(records))):  # personal data planted in real documents, in place
        r["text"], r["planted"], r["probe"] = *plant_pii(r["text"], rng), "pii/planted"
    records += [{"text": junk(kind, rng), "probe": f"junk/{kind}"} for kind in JUNK_KINDS for _ in range(junk_per_kind)]
    rng.shuffle(records)
    # Copies come after every original, so deduplication keeps the original and drops the copy.
    pool = [r["text"] for r in records if r["probe"] in ("csl_abstracts", "cmrc_contexts")]
    for _ in range(min(50, len(pool))):
        records.append({"text": rng.choice(pool).replace("，", "，  ", 2) + "  \n", "probe": "dup/exact"})
        records.append({"text": near_copy(rng.choice(pool), rng), "probe": "dup/near"})
    with path.open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return Counter(r["probe"] for r in records)


# --- running and reporting ---------------------------------------------------------------------------------

def outcome(out: Path) -> tuple[dict[str, Counter], list[dict]]:
    """probe -> Counter of "kept" / the removing rule; and the kept records."""
    result: dict[str, Counter] = defaultdict(Counter)
    kept = []
    for shard in sorted(out.glob("shard-*.jsonl")):
        for line in shard.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            result[r["probe"]]["kept"] += 1
            kept.append(r)
    for shard in sorted((out / "removed").glob("*.jsonl")):
        for line in shard.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            result[r["probe"]][r["clean"]["rule"]] += 1
    return result, kept


def rules_cell(c: Counter, top: int = 4) -> str:
    rules = [(k, n) for k, n in c.most_common() if k != "kept"]
    return ", ".join(f"{k} {n}" for k, n in rules[:top]) + (" …" if len(rules) > top else "") or "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/clean_probe"))
    ap.add_argument("--limit", type=int, default=1000, help="documents per real corpus (a seeded sample)")
    ap.add_argument("--junk", type=int, default=60, help="documents per junk kind")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=18)
    args = ap.parse_args()
    if not SHARED.exists():
        print(f"skipped: {SHARED} is absent")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    probe = args.out / "probe.jsonl"
    sizes = build_probe(probe, args.limit, args.junk, args.seed)
    if not sizes:
        print(f"skipped: no known corpus in {SHARED}")
        return
    results, kept = {}, {}
    for profile in PROFILES:
        cfg = CleanConfig.preset(profile, {"workers": args.workers})
        run = clean([str(probe)], args.out / profile, cfg, overwrite=True)
        results[profile], kept[profile] = outcome(args.out / profile)
        print(f"{profile}: {run['documents_out']:,} of {run['documents_in']:,} kept in {run['seconds']:.1f} s",
              file=sys.stderr)

    lines = ["| probe | docs | web: kept / removed | curated: kept / removed | rules (web) | rules (curated) |",
             "|---|---:|---:|---:|---|---|"]
    totals = {p: Counter() for p in PROFILES}
    for name in sorted(sizes, key=lambda n: (n.split("/")[0] in ("junk", "dup", "pii"), n)):
        n = sizes[name]
        cells = []
        for p in PROFILES:
            k = results[p][name]["kept"]
            share = (n - k) / n if name.startswith(("junk/", "dup/")) else k / n
            what = "removed" if name.startswith(("junk/", "dup/")) else "kept"
            cells.append(f"{k} / {n - k} ({share:.1%} {what})")
            group = "junk" if name.startswith("junk/") else "dup" if name.startswith("dup/") else \
                "pii" if name.startswith("pii/") else "clean"
            totals[p][group + "_n"] += n
            totals[p][group + "_ok"] += (n - k) if group in ("junk", "dup") else k
        lines.append(f"| {name} | {n} | {cells[0]} | {cells[1]} | {rules_cell(results['web'][name])} "
                     f"| {rules_cell(results['curated'][name])} |")
    summary = []
    for p in PROFILES:
        t = totals[p]
        leaked = sum(v in r["text"] for r in kept[p] if r["probe"] == "pii/planted" for v in r["planted"])
        planted = sum(len(r["planted"]) for r in kept[p] if r["probe"] == "pii/planted")
        summary.append(f"- **{p}**: clean real text kept {t['clean_ok']}/{t['clean_n']} "
                       f"({t['clean_ok'] / max(t['clean_n'], 1):.1%}); junk removed {t['junk_ok']}/{t['junk_n']} "
                       f"({t['junk_ok'] / max(t['junk_n'], 1):.1%}); planted duplicates removed "
                       f"{t['dup_ok']}/{t['dup_n']}; planted PII values left in kept text {leaked}/{planted}")
    md = "\n".join(["# lmstack clean probe: web vs curated", "", f"`python bench/clean_probe.py --out {args.out} "
                    f"--limit {args.limit} --junk {args.junk} --seed {args.seed}`", "", *summary, "", *lines]) + "\n"
    (args.out / "probe.md").write_text(md, encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
