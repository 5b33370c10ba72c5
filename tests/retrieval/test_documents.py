"""Reading passages: .jsonl ids kept, .txt/.md chunked with overlap and path ids, bad input named."""

from __future__ import annotations

import json

import pytest

from lmstack.errors import LmstackError
from lmstack.retrieval.documents import chunk, read_corpus


def _covers(text: str, chunks: list[str], overlap: int) -> None:
    """Every chunk is a piece of ``text``, in order, and consecutive chunks share about ``overlap`` chars."""
    pos = 0
    prev_end = 0
    for i, c in enumerate(chunks):
        start = text.index(c, pos)
        assert start <= prev_end, f"gap before chunk {i}"
        if i:
            assert prev_end - start >= min(overlap // 2, 1)
        pos, prev_end = start + 1, start + len(c)
    assert prev_end == len(text.rstrip())


def test_chunks_cover_text_with_overlap_and_never_cut_words():
    text = " ".join(f"w{i:03d}" for i in range(400))  # 1999 characters, words of 4
    chunks = chunk(text, 100, 30)
    assert all(len(c) <= 100 for c in chunks)
    assert all(w.startswith("w") and len(w) == 4 for c in chunks for w in c.split())
    _covers(text, chunks, 30)
    assert " ".join(chunk(text, 100, 0)) == text  # no overlap: the chunks partition the words


def test_unspaced_chinese_keeps_its_overlap():
    text = "".join(f"第{i}句话在这里结束。" for i in range(60))
    chunks = chunk(text, 50, 15)
    assert len(chunks) > 5 and all(len(c) <= 50 for c in chunks)
    assert all(c.endswith("。") for c in chunks)  # cut at a sentence end where one lies in the second half
    _covers(text, chunks, 15)


def test_short_and_empty_texts():
    assert chunk("  hello  ", 100, 10) == ["hello"]
    assert chunk(" \n ", 100, 10) == []
    assert chunk("x" * 25, 10, 3) == ["x" * 10, "x" * 10, "x" * 10, "x" * 4]  # no break: hard cuts, overlap 3


def test_folder_ids_are_relative_paths_plus_chunk_number(tmp_path):
    (tmp_path / "docs" / "guide").mkdir(parents=True)
    (tmp_path / "docs" / "guide" / "setup.md").write_text("word " * 300, encoding="utf-8")
    (tmp_path / "docs" / "a.txt").write_text("short text", encoding="utf-8")
    (tmp_path / "docs" / "empty.txt").write_text("  \n", encoding="utf-8")
    (tmp_path / "docs" / ".hidden.txt").write_text("secret", encoding="utf-8")
    corpus = read_corpus([tmp_path / "docs"], chunk_size=500, chunk_overlap=100)
    ids = [p.id for p in corpus.passages]
    assert ids == ["a.txt#0", "guide/setup.md#0", "guide/setup.md#1", "guide/setup.md#2", "guide/setup.md#3"]
    assert corpus.skipped_empty == [str(tmp_path / "docs" / "empty.txt")]
    # A file named directly is identified by its name.
    assert [p.id for p in read_corpus([tmp_path / "docs" / "a.txt"]).passages] == ["a.txt#0"]


def test_jsonl_ids_kept_and_texts_not_cut(tmp_path):
    path = tmp_path / "p.jsonl"
    recs = [{"id": "doc-7", "text": "x " * 2000}, {"id": 12, "text": "twelve"}, {"id": "e", "text": " "}]
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n\n", encoding="utf-8")
    corpus = read_corpus([path], chunk_size=100, chunk_overlap=10)
    assert [(p.id, len(p.text)) for p in corpus.passages] == [("doc-7", 4000), ("12", 6)]
    assert corpus.skipped_empty == [f"{path}:3"]


def test_index_folder_inside_the_docs_is_not_read_back(tmp_path):
    (tmp_path / "a.txt").write_text("alpha", encoding="utf-8")
    (tmp_path / "idx").mkdir()
    (tmp_path / "idx" / "manifest.json").write_text('{"format": "lmstack-index-1"}', encoding="utf-8")
    (tmp_path / "idx" / "passages.jsonl").write_text('{"id": "a.txt#0", "text": "alpha"}\n', encoding="utf-8")
    assert [p.id for p in read_corpus([tmp_path]).passages] == ["a.txt#0"]


@pytest.mark.parametrize("name, content, message", [
    ("bad.txt", b"ok \xff\xfe", r"bad.txt: not UTF-8 \(invalid byte 0xff at offset 3\)"),
    ("bad.jsonl", b'{"id": "a", "text": "x"}\n{"id": "b", "text": "\xc3("}\n', r"bad.jsonl:2: not UTF-8"),
    ("noid.jsonl", b'{"text": "x"}\n', r"noid.jsonl:1: expected an 'id' field"),
    ("notext.jsonl", b'{"id": "a"}\n', r"notext.jsonl:1: expected a JSON object with a string 'text'"),
    ("broken.jsonl", b'{"id": "a", \n', r"broken.jsonl:1: not valid JSON"),
    ("dup.jsonl", b'{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', r"duplicate passage id 'a'"),
    ("empty.txt", b"", r"no passages to index"),
])
def test_bad_input_is_one_line_naming_the_file(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(LmstackError, match=message) as err:
        read_corpus([tmp_path / name])
    assert "\n" not in str(err.value)


def test_bad_chunking_settings():
    with pytest.raises(LmstackError, match="chunk_overlap < chunk_size"):
        read_corpus(["x"], chunk_size=100, chunk_overlap=100)
