import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lmstack.data.clean.config import ReadConfig
from lmstack.data.clean.readers import find_files, plan, read_task
from lmstack.data.clean.report import Stats
from lmstack.errors import LmstackError

DEFAULT_CONFIG = ReadConfig()


def read_all(paths, cfg=DEFAULT_CONFIG):
    stats = Stats()
    tasks = plan(find_files([str(p) for p in paths]), cfg, stats)
    return [d for t in tasks for d in read_task(t, cfg, stats)], stats.data["input"], tasks


def test_txt_blocks_and_files(tmp_path):
    (tmp_path / "a.txt").write_text("First block\nstill first.\n\n\n  \nSecond block.\n\nThird.", encoding="utf-8")
    docs, _, _ = read_all([tmp_path / "a.txt"])
    assert [(d.source.split(":")[-1], d.text) for d in docs] == [
        ("1", "First block\nstill first."), ("6", "Second block."), ("8", "Third.")]
    docs, _, _ = read_all([tmp_path / "a.txt"], ReadConfig(txt_unit="file"))
    assert len(docs) == 1 and docs[0].text.startswith("First block")


def test_jsonl_keeps_fields_and_skips_bad_lines(tmp_path):
    lines = [json.dumps({"text": "hello", "id": 7, "kind": "x"}), "not json", json.dumps({"body": "no text"}),
             "", json.dumps({"text": 5}), json.dumps(["a list"]), json.dumps({"text": "bye"})]
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    docs, info, _ = read_all([tmp_path / "a.jsonl"])
    assert [(d.text, d.meta) for d in docs] == [("hello", {"id": 7, "kind": "x"}), ("bye", {})]
    assert docs[1].source.endswith("a.jsonl:7")
    assert info["bad_record_count"] == 4
    assert [(b["line"], b["error"].split(" (")[0]) for b in info["bad_records"]] == [
        (2, "not JSON"), (3, "no string 'text' field"), (5, "no string 'text' field"), (6, "no string 'text' field")]


def test_text_field_is_configurable(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"content": "hi", "text": "other"}) + "\n", encoding="utf-8")
    docs, _, _ = read_all([tmp_path / "a.jsonl"], ReadConfig(text_field="content"))
    assert docs[0].text == "hi" and docs[0].meta == {"text": "other"}


def test_undecodable_bytes_and_lone_surrogates_are_replaced_and_counted(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"caf\xe9 ok\n\nfine \xff\xfe.")
    (tmp_path / "b.jsonl").write_bytes(b'{"text": "bad \\ud800 half", "note": "\\udfff"}\n{"text": "caf\xe9"}\n')
    docs, info, _ = read_all([tmp_path / "a.txt", tmp_path / "b.jsonl"])
    assert [d.text for d in docs] == ["caf\ufffd ok", "fine \ufffd\ufffd.", "bad \ufffd half", "caf\ufffd"]
    assert docs[2].meta == {"note": "\ufffd"}
    assert info["undecodable_bytes"] == 6


def test_parquet_and_folders(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    table = pa.table({"text": ["one", None, "three"], "lang": ["en", "en", "zh"]})
    pq.write_table(table, folder / "sub" / "p.parquet", row_group_size=1)
    (folder / "b.txt").write_text("bee", encoding="utf-8")
    (folder / "notes.md").write_text("ignored", encoding="utf-8")
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "x.txt").write_text("hidden", encoding="utf-8")
    docs, info, tasks = read_all([folder])
    assert [(d.text, d.meta) for d in docs] == [("bee", {}), ("one", {"lang": "en"}), ("three", {"lang": "zh"})]
    assert docs[2].source.endswith("p.parquet:3")
    assert info["bad_record_count"] == 1 and info["files"] == 2


def test_parquet_without_the_text_column(tmp_path):
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "p.parquet")
    with pytest.raises(LmstackError, match="no 'text' column"):
        read_all([tmp_path / "p.parquet"])


def test_bad_paths_have_clear_errors(tmp_path):
    with pytest.raises(LmstackError, match="no such file"):
        find_files([str(tmp_path / "missing.jsonl")])
    (tmp_path / "a.csv").write_text("x", encoding="utf-8")
    with pytest.raises(LmstackError, match="expected a .txt, .jsonl or .parquet file"):
        find_files([str(tmp_path / "a.csv")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(LmstackError, match="no .txt, .jsonl or .parquet"):
        find_files([str(tmp_path / "empty")])


def test_empty_files_are_noted(tmp_path):
    (tmp_path / "a.jsonl").write_text("", encoding="utf-8")
    (tmp_path / "b.txt").write_text("\n \n", encoding="utf-8")
    docs, info, tasks = read_all([tmp_path / "a.jsonl", tmp_path / "b.txt"])
    assert docs == [] and tasks == [] and len(info["empty_files"]) == 2


@pytest.mark.parametrize("suffix,sep", [(".jsonl", "\n"), (".txt", "\n\n")])
def test_tasks_split_at_boundaries_and_keep_line_numbers(tmp_path, suffix, sep):
    texts = [f"document {i} " + "word " * (i % 7) for i in range(300)]
    body = sep.join(json.dumps({"text": t}) if suffix == ".jsonl" else t for t in texts)
    (tmp_path / f"a{suffix}").write_text(body, encoding="utf-8")
    docs, _, tasks = read_all([tmp_path / f"a{suffix}"], ReadConfig(task_mb=0.001))
    assert len(tasks) > 5
    assert [d.text.strip() for d in docs] == [t.strip() for t in texts]
    step = 1 if suffix == ".jsonl" else 2
    assert [int(d.source.rsplit(":", 1)[1]) for d in docs] == [1 + step * i for i in range(300)]


def _consume_peak(task_docs) -> tuple[int, int, int]:
    """Python's peak allocation while the documents are read one by one (none kept), their count and chars."""
    import tracemalloc

    tracemalloc.start()
    try:
        n = chars = 0
        for doc in task_docs():
            n, chars = n + 1, chars + len(doc.text)
        return tracemalloc.get_traced_memory()[1], n, chars
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("suffix", [".txt", ".jsonl"])
def test_a_huge_line_is_read_in_bounded_memory_and_cut_into_documents(tmp_path, suffix):
    """One 6 MB line, no newline: before, the reader held the line several times over (the task's bytes, their
    split, the decoded text); now a .txt line is streamed (5 MB peak) and a .jsonl record held as line + text."""
    words = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor " * 80_000)[:6_000_000]
    path = tmp_path / f"big{suffix}"
    path.write_text(words if suffix == ".txt" else json.dumps({"text": words, "id": 3}) + "\n", encoding="utf-8")
    cfg = ReadConfig(max_chars=500_000)
    stats = Stats()
    tasks = plan(find_files([str(path)]), cfg, stats)
    peak, n, chars = _consume_peak(lambda: (d for t in tasks for d in read_task(t, cfg, stats)))
    assert n == 13 and chars == len(words)  # pieces of at most 500K characters, cut at a space; nothing lost
    assert peak < (8 if suffix == ".txt" else 16) * 2**20, peak / 2**20  # before: 17 MB and 23 MB
    assert stats.data["input"]["cut_documents"] == 1 and stats.data["input"]["cut_pieces"] == 13


def test_cut_pieces_end_at_paragraph_line_or_word_breaks(tmp_path):
    para = ("A sentence of several words here. " * 40).strip()  # 1,359 characters
    text = para + "\n\n" + "tail line " * 300 + "x" * 5_000
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": text, "lang": "en"}) + "\n", encoding="utf-8")
    docs, info, _ = read_all([tmp_path / "a.jsonl"], ReadConfig(max_chars=2_000))
    assert "".join(d.text for d in docs) == text
    assert all(len(d.text) <= 2_000 for d in docs)
    assert [d.source.rsplit(":", 1)[1] for d in docs] == [f"1#{k}" for k in range(len(docs))]
    assert all(d.meta == {"lang": "en"} for d in docs)
    assert docs[0].text == para + "\n\n"  # the paragraph break in the piece's second half
    assert docs[1].text.endswith("line ") and len(docs[1].text) > 1_900  # no paragraph or line break: a space
    assert "x" * 2_000 in [d.text for d in docs]  # no break at all: a character boundary
    assert info["cut_documents"] == 1 and info["cut_pieces"] == len(docs)
    whole, info, _ = read_all([tmp_path / "a.jsonl"], ReadConfig(max_chars=0))
    assert [d.text for d in whole] == [text] and "cut_documents" not in info


def test_txt_block_longer_than_max_chars_is_cut_while_reading(tmp_path):
    lines = [f"line {i} " + "word " * 30 for i in range(200)]  # one block of ~32K characters
    (tmp_path / "a.txt").write_text("\n".join(lines) + "\n\nnext block\n", encoding="utf-8")
    docs, info, _ = read_all([tmp_path / "a.txt"], ReadConfig(max_chars=5_000))
    assert docs[-1].text == "next block" and docs[-1].source.endswith("a.txt:202")
    pieces = docs[:-1]
    assert "".join(d.text for d in pieces) == "\n".join(lines)
    assert all(len(d.text) <= 5_000 for d in pieces[:-1]) and all(d.text.endswith("\n") for d in pieces[:-1])
    assert [d.source.rsplit(":", 1)[1] for d in pieces] == [f"1#{k}" for k in range(len(pieces))]
