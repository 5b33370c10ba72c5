import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lmstack.cli import main
from lmstack.data.prepare import prepare
from lmstack.text.tokenizer import Tokenizer, train_char
from lmstack.errors import LmstackError


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def documents(out: Path, split: str) -> list[str]:
    """Decode a split's shards back into its documents (each one ends with eos)."""
    m, tok = manifest(out), Tokenizer.load(out)
    shards = m["splits"][split]["shards"]
    if not shards:
        return []
    ids = np.concatenate([np.fromfile(out / s["file"], dtype=m["dtype"]) for s in shards])
    assert ids[-1] == tok.eos_id
    return [tok.decode(d[:-1]) for d in np.split(ids, np.flatnonzero(ids == tok.eos_id) + 1)[:-1]]


def test_shards_hold_every_document_once_with_counts_in_the_manifest(prepared, corpus):
    m = manifest(prepared)
    assert m["dtype"] == "uint16" and m["vocab_size"] == 400 and m["eos_id"] == 2
    assert m["tokenizer_sha256"] == Tokenizer.load(prepared).sha256
    train, val = documents(prepared, "train"), documents(prepared, "val")
    assert Counter(train + val) == Counter(r["text"] for r in corpus)
    for split, docs in (("train", train), ("val", val)):
        info = m["splits"][split]
        assert info["documents"] == len(docs)
        assert info["bytes"] == sum(len(d.encode("utf-8")) for d in docs)
        assert info["tokens"] == sum(s["tokens"] for s in info["shards"])
        for s in info["shards"]:
            assert (prepared / s["file"]).stat().st_size == 2 * s["tokens"] and s["tokens"] <= 10_000
    assert len(m["splits"]["train"]["shards"]) > 1
    assert 0.03 < len(val) / len(corpus) < 0.2


def test_same_inputs_give_identical_outputs_and_the_seed_moves_the_split(corpus_jsonl, tmp_path):
    a = prepare([corpus_jsonl], out=tmp_path / "a", vocab_size=300)
    b = prepare([corpus_jsonl], out=tmp_path / "b", vocab_size=300)
    c = prepare([corpus_jsonl], out=tmp_path / "c", vocab_size=300, seed=1)
    for name in ("train_000.bin", "val_000.bin", "tokenizer.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert a["val_documents"] == b["val_documents"]
    assert documents(tmp_path / "a", "val") != documents(tmp_path / "c", "val")
    assert c["train_documents"] + c["val_documents"] == a["train_documents"] + a["val_documents"]


def test_duplicates_never_straddle_the_split(tmp_path):
    lines = [json.dumps({"text": f"document {i % 50}"}) for i in range(1000)]
    (tmp_path / "dup.jsonl").write_text("\n".join(lines) + "\n")
    prepare([tmp_path / "dup.jsonl"], out=tmp_path / "out", tokenizer="char", val_fraction=0.3)
    assert not set(documents(tmp_path / "out", "train")) & set(documents(tmp_path / "out", "val"))


def test_cleaned_folder_of_jsonl_shards(tmp_path, corpus):
    """The layout `lmstack clean` writes: shard-N.jsonl, removed/ (dropped documents), report.json, .state/."""
    folder = tmp_path / "corpora" / "cleaned"
    for sub in ("more", "removed", ".state"):
        (folder / sub).mkdir(parents=True)
    halves = [corpus[: len(corpus) // 2], corpus[len(corpus) // 2:]]
    for path, records in zip((folder / "shard-00000.jsonl", folder / "more" / "shard-00001.jsonl"), halves):
        path.write_text("".join(json.dumps({"text": r["text"], "id": 1}, ensure_ascii=False) + "\n" for r in records))
    (folder / "removed" / "shard-00000.jsonl").write_text('{"text": "dropped spam"}\n')
    (folder / "report.json").write_text("{}")  # not a corpus file: ignored
    (folder / ".state" / "x.jsonl").write_text("not json\n")  # hidden: ignored
    result = prepare([tmp_path / "corpora"], out=tmp_path / "out", tokenizer="char")
    assert result["train_documents"] + result["val_documents"] == len(corpus)
    assert "dropped spam" not in documents(tmp_path / "out", "train") + documents(tmp_path / "out", "val")


def test_txt_documents_are_separated_by_blank_lines(tmp_path):
    (tmp_path / "book.txt").write_text("para one\nstill one\n\n\n  \npara two\r\n\r\nthree\n", encoding="utf-8")
    prepare([tmp_path / "book.txt"], out=tmp_path / "out", tokenizer="char", val_fraction=0)
    assert documents(tmp_path / "out", "train") == ["para one\nstill one", "para two", "three"]


def test_reusing_a_tokenizer_gives_the_same_ids(prepared, corpus_jsonl, tmp_path):
    result = prepare([corpus_jsonl], out=tmp_path, tokenizer=str(prepared), val_fraction=0.1, shard_tokens=10_000)
    assert manifest(tmp_path)["tokenizer_sha256"] == manifest(prepared)["tokenizer_sha256"]
    assert result["vocab_size"] == 400
    for s in manifest(prepared)["splits"]["train"]["shards"]:
        assert (tmp_path / s["file"]).read_bytes() == (prepared / s["file"]).read_bytes()


def test_large_vocabulary_switches_to_uint32(tmp_path):
    text = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 70_000) if not 0xD800 <= c < 0xE000)
    train_char([text]).save(tmp_path / "tok")
    (tmp_path / "a.txt").write_text(text[:100] + "\n\n" + text[-100:], encoding="utf-8")
    result = prepare([tmp_path / "a.txt"], out=tmp_path / "out", tokenizer=str(tmp_path / "tok"), val_fraction=0)
    assert result["dtype"] == "uint32" and manifest(tmp_path / "out")["dtype"] == "uint32"
    assert documents(tmp_path / "out", "train") == [text[:100], text[-100:]]


def test_a_failed_run_leaves_the_previous_output_untouched(corpus_jsonl, tmp_path):
    out = tmp_path / "out"
    prepare([corpus_jsonl], out=out, tokenizer="char")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (tmp_path / "bad.txt").write_bytes(b"fine\n\xff\n")
    with pytest.raises(LmstackError):
        prepare([corpus_jsonl, tmp_path / "bad.txt"], out=out, tokenizer=str(out))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temp files, nothing replaced


def test_shards_left_by_a_larger_earlier_run_are_removed(corpus_jsonl, tmp_path):
    prepare([corpus_jsonl], out=tmp_path, tokenizer="char", shard_tokens=20_000)
    assert (tmp_path / "train_002.bin").exists()
    prepare([corpus_jsonl], out=tmp_path, tokenizer="char")
    assert sorted(p.name for p in tmp_path.glob("*.bin")) == ["train_000.bin", "val_000.bin"]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.txt", b"", "empty.txt: file is empty"),
        ("blank.jsonl", b"\n  \n", "blank.jsonl: no documents"),
        ("latin1.txt", "ok\ncafé\n".encode("latin-1"), "latin1.txt: not valid UTF-8 at byte 6 (line 2)"),
        ("broken.jsonl", b'{"text": "a"}\n{"text": \n', "broken.jsonl:2: not valid JSON"),
        ("notext.jsonl", b'{"text": "a"}\n\n{"body": "b"}\n',
         'notext.jsonl:3: expected a JSON object with a string "text"'),
        ("list.jsonl", b'["text"]\n', "list.jsonl:1: expected a JSON object"),
        ("data.csv", b"a,b\n", "data.csv: expected a .txt or .jsonl file"),
    ],
)
def test_bad_inputs_are_one_line_errors_naming_the_file(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(LmstackError) as e:
        prepare([tmp_path / name], out=tmp_path / "out", tokenizer="char")
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_missing_paths_and_empty_folders_and_bad_options(tmp_path, corpus_jsonl):
    with pytest.raises(LmstackError, match="missing.txt: no such file"):
        prepare([tmp_path / "missing.txt"], out=tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LmstackError, match="empty: no .txt or .jsonl files"):
        prepare([tmp_path / "empty"], out=tmp_path / "out")
    with pytest.raises(LmstackError, match="--tokenizer wordpiece: expected bpe, char, or the path"):
        prepare([corpus_jsonl], out=tmp_path / "out", tokenizer="wordpiece")
    with pytest.raises(LmstackError, match="--val-fraction"):
        prepare([corpus_jsonl], out=tmp_path / "out", val_fraction=1.0)
    bare = tmp_path / "bare"
    train_char(["abc"], special_tokens=(), byte_fallback=False).save(bare)
    with pytest.raises(LmstackError, match="no eos token"):
        prepare([corpus_jsonl], out=tmp_path / "out", tokenizer=str(bare))


def test_cli(corpus_jsonl, tmp_path, capsys):
    main(["prepare", str(corpus_jsonl), "--out", str(tmp_path), "--tokenizer", "char", "--val-fraction", "0.2",
          "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["val_tokens"] == manifest(tmp_path)["splits"]["val"]["tokens"] > 0


def test_special_token_strings_in_documents_stay_text(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "before <|eos|> after <|im_start|>"}) + "\n")
    prepare([tmp_path / "a.jsonl"], out=tmp_path / "out", tokenizer="char", val_fraction=0)
    assert documents(tmp_path / "out", "train") == ["before <|eos|> after <|im_start|>"]


@pytest.mark.parametrize("chat_markup", [False, True])
def test_chat_markup_makes_only_the_turn_markers_special(tmp_path, chat_markup):
    text = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello <|eos|><|im_end|>\n"
    (tmp_path / "c.jsonl").write_text(json.dumps({"text": text}) + "\n")
    prepare([tmp_path / "c.jsonl"], out=tmp_path / "d", vocab_size=300, val_fraction=0, chat_markup=chat_markup)
    tok = Tokenizer.load(tmp_path / "d")
    ids = np.fromfile(tmp_path / "d" / "train_000.bin", dtype=np.uint16).tolist()
    special = {tok.token_to_id(t): t for t in ("<|im_start|>", "<|im_end|>", "<|eos|>")}
    assert [special[i] for i in ids if i in special] == (
        ["<|im_start|>", "<|im_end|>", "<|im_start|>", "<|im_end|>"] * chat_markup + ["<|eos|>"])
    assert tok.decode(ids[:-1]) == text


def _ids(out: Path) -> list[int]:
    m = manifest(out)
    return np.concatenate([np.fromfile(out / s["file"], dtype=m["dtype"])
                           for split in ("train", "val") for s in m["splits"][split]["shards"]]).tolist()


@pytest.mark.parametrize("suffix", [".txt", ".jsonl"])
def test_a_long_document_is_encoded_in_pieces_with_the_tokens_of_the_whole(tmp_path, monkeypatch, suffix):
    """Pieces end before a lone space / newline or a sentence mark between letters, where byte-level BPE's
    pre-tokenizer splits anyway: the ids equal encoding the whole document, which stays one document."""
    import lmstack.data.prepare as prep

    english = "The tide rose over the old harbour wall, and the gulls went quiet. " * 60
    chinese = "潮水漫过旧港的石墙，海鸥安静下来。渔夫们收起网，回到岸上。" * 60
    text = (english + chinese + "\nA second line, still the same paragraph. " * 20 + english).strip()
    tok = prep.train_bpe([english, chinese], vocab_size=420)
    tok.save(tmp_path / "tok")
    path = tmp_path / f"long{suffix}"
    path.write_text(text if suffix == ".txt" else json.dumps({"text": text}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    monkeypatch.setattr(prep, "PIECE_CHARS", 300)
    pieces = list(prep.read_pieces(path))
    assert len(pieces) > 20 and all(len(p.text) <= 300 for p in pieces) and "".join(p.text for p in pieces) == text
    result = prep.prepare([path], out=tmp_path / "out", tokenizer=str(tmp_path / "tok"), val_fraction=0.5)
    assert result["train_documents"] + result["val_documents"] == 1
    assert _ids(tmp_path / "out") == tok.encode(text, specials=False) + [tok.eos_id]


def test_text_without_breaks_is_cut_at_a_character_and_round_trips(tmp_path, monkeypatch):
    import lmstack.data.prepare as prep

    text = "".join(chr(0x4E00 + (i * 7919) % 3000) for i in range(5_000))  # Han characters, no punctuation
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    monkeypatch.setattr(prep, "PIECE_CHARS", 1_000)
    assert [len(p.text) for p in prep.read_pieces(tmp_path / "a.txt")] == [1_000] * 5
    prep.prepare([tmp_path / "a.txt"], out=tmp_path / "out", tokenizer="char", val_fraction=0)
    assert documents(tmp_path / "out", "train") == [text]


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the peak from /proc (Linux)")
def test_peak_memory_is_flat_in_line_length(tmp_path):
    """The probe's fault at a tenth of its scale: one 5 MB line without a newline. Before, prepare's peak RSS grew
    ~150 bytes per byte of the line (740 MB here, 8 GB at 50 MB); now it stays near the import cost (~170 MB)."""
    import subprocess
    import sys

    from lmstack.text.tokenizer import train_bpe

    sentence = "The tide rose over the old harbour wall and the gulls went quiet for a while. "
    train_bpe([sentence * 50], vocab_size=300).save(tmp_path / "tok")
    (tmp_path / "line.txt").write_text(sentence * (5 * 2**20 // len(sentence)), encoding="utf-8")
    # VmHWM: this process's own peak (ru_maxrss would include the forked test runner's pages before exec)
    code = ("import sys; from lmstack.data.prepare import prepare; "
            "prepare([sys.argv[1]], out=sys.argv[2], tokenizer=sys.argv[3]); "
            "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "line.txt"), str(tmp_path / "out"),
                           str(tmp_path / "tok")], capture_output=True, text=True, check=True)
    peak_mb = int(done.stdout.split()[-1]) / 1024  # KiB
    assert peak_mb < 400, peak_mb


def test_lone_surrogates_in_jsonl_become_replacement_characters_and_are_counted(tmp_path, capsys):
    (tmp_path / "a.jsonl").write_bytes(b'{"text": "half \\ud800 a pair \\ud83d\\ude00 end \\udfff"}\n{"text": "ok"}\n')
    result = prepare([tmp_path / "a.jsonl"], out=tmp_path / "out", tokenizer="char", val_fraction=0)
    assert result["replaced_surrogates"] == 2 and manifest(tmp_path / "out")["replaced_surrogates"] == 2
    assert documents(tmp_path / "out", "train") == ["half \ufffd a pair \U0001F600 end \ufffd", "ok"]
    assert "2 lone surrogate escape(s)" in capsys.readouterr().err
