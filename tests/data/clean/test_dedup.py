import random

import numpy as np
import pytest
from datasketch import MinHash

from lmstack.data.clean.config import DedupConfig
from lmstack.data.clean.dedup import Bands, DedupIndex, MinHasher, exact_key, jaccard, lsh_params, shingles

CFG = DedupConfig()
WORDS = "river town bridge stone farmer trader family water road city year long people story told".split()


def doc(rng: random.Random, n: int = 200) -> str:
    return " ".join(rng.choice(WORDS) + str(rng.randrange(50)) for _ in range(n))


def add(index: DedupIndex, name: str, text: str, lang: str = "en") -> None:
    s = shingles(text, lang, index.cfg)
    index.add(name, exact_key(text), MinHasher(index.cfg.num_perm, index.cfg.seed).signature(s), s)


def near(index: DedupIndex, text: str, lang: str = "en"):
    s = shingles(text, lang, index.cfg)
    return index.find_near(MinHasher(index.cfg.num_perm, index.cfg.seed).signature(s), s)


def test_signature_matches_datasketch_bit_for_bit():
    hashes = shingles(doc(random.Random(0)), "en", CFG)
    ours = MinHasher(128, 7).signature(hashes)
    ref = MinHash(num_perm=128, seed=7, hashfunc=int)
    ref.update_batch(hashes.tolist())
    assert np.array_equal(ours, ref.hashvalues)
    assert np.array_equal(MinHasher(128, 7).signature(hashes, chunk=3), ours)  # chunking changes nothing


def test_shingles_words_and_chinese_characters():
    cfg = DedupConfig(shingle_words=2, shingle_chars=2)
    assert len(shingles("The cat, the CAT! the cat", "en", cfg)) == 2  # {the cat, cat the}: case and punctuation go
    assert len(shingles("猫猫猫，猫", "zh", cfg)) == 1
    assert len(shingles("short", "en", CFG)) == 1  # fewer words than n: one shingle of them all
    assert len(shingles("!!!", "en", CFG)) == 0


def test_exact_key_ignores_case_and_whitespace_only():
    assert exact_key("Hello  World\n") == exact_key("hello world")
    assert exact_key("hello world") != exact_key("hello world!")


def test_lsh_params_favour_recall_at_the_threshold():
    for t in (0.5, 0.7, 0.8, 0.9):
        b, r = lsh_params(t, 128)
        assert b * r <= 128 and 1 - (1 - t**r) ** b >= 0.99
        assert 1 - (1 - t ** (r + 1)) ** (128 // (r + 1)) < 0.99  # and no more rows than that
    assert lsh_params(0.8, 128) == (21, 6)


@pytest.mark.parametrize("verify", ["exact", "signature"])
def test_near_duplicates_found_unrelated_kept(verify):
    rng = random.Random(1)
    index = DedupIndex(DedupConfig(verify=verify))
    original = doc(rng)
    add(index, "a", original)
    add(index, "b", doc(rng))
    words = original.split()
    edited = " ".join(words[:190] + ["changed"] * 2)  # a small edit at the end: Jaccard ~0.9
    hit = near(index, edited)
    assert hit is not None and hit[0] == "a" and hit[1] >= 0.8
    assert near(index, doc(rng)) is None


def test_near_duplicate_decision_follows_exact_jaccard():
    rng = random.Random(2)
    index = DedupIndex(DedupConfig(threshold=0.8))
    original = doc(rng, 400)
    add(index, "a", original)
    a = shingles(original, "en", CFG)
    for cut in range(0, 80, 4):  # replace a growing block of words: Jaccard falls through the threshold
        words = original.split()
        edited = " ".join(words[: 400 - cut] + [f"new{i}" for i in range(cut)])
        j = jaccard(a, shingles(edited, "en", CFG))
        assert (near(index, edited) is not None) == (j >= 0.8), (cut, j)


def test_chinese_near_duplicates_use_characters():
    rng = random.Random(3)
    chars = "河谷历史很长生活在那里的人们用许多方式讲述它农民和商人带着家来到水边建起了小镇"
    text = "".join(rng.choice(chars) for _ in range(400))
    index = DedupIndex(CFG)
    add(index, "zh", text, "zh")
    assert near(index, text[:390] + "新的内容", "zh")[0] == "zh"
    assert near(index, "".join(rng.choice(chars) for _ in range(400)), "zh") is None


def test_index_saves_and_loads(tmp_path):
    rng = random.Random(4)
    texts = [doc(rng) for _ in range(5)]
    index = DedupIndex(CFG)
    for i, t in enumerate(texts[:3]):
        add(index, f"d{i}", t)
    index.save_shard(tmp_path, 0, 0)
    add(index, "d3", texts[3])
    index.save_shard(tmp_path, 1, 3)
    again = DedupIndex(CFG)
    assert again.load(tmp_path) == 4
    assert again.find_exact(exact_key(texts[3])) == "d3"
    assert near(again, texts[1] + " extra")[0] == "d1"
    assert near(again, texts[4]) is None
    with pytest.raises(Exception, match="num_perm=128"):
        DedupIndex(DedupConfig(num_perm=64)).load(tmp_path)


def test_bands_keep_every_document_of_a_bucket():
    bands = Bands(4, 3)
    sig = np.arange(12, dtype=np.uint32)
    other = sig.copy()
    other[3:] += 100  # shares only the first band
    for doc in range(3):
        bands.insert(sig, doc)
    bands.insert(other, 3)
    assert bands.query(sig) == [0, 1, 2, 3]
    assert bands.query(np.full(12, 7, dtype=np.uint32)) == []
    assert sum(isinstance(v, list) for t in bands.tables for v in t.values()) == 4
