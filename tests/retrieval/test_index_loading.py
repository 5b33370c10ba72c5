"""A damaged index (a file cut short, a part from another build) gives one line naming the file, through the CLI."""

from __future__ import annotations

import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest

from lmstack import cli
from lmstack.errors import LmstackError
from lmstack.retrieval import index as index_module
from lmstack.retrieval.index import Retriever

DOCS = {f"d{i}.txt": f"Passage {i} is about planets, oceans and green tea number {i}." for i in range(6)}


class HashEncoder:
    """Hashed bag of words, L2-normalised (a stand-in for a trained dual encoder)."""

    fingerprint = "hash-64"

    def encode(self, texts: list[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                out[i, zlib.crc32(word.encode()) % 64] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A hybrid index (BM25 arrays + FAISS file + passages), built once; tests damage copies of it."""
    root = tmp_path_factory.mktemp("index")
    for name, text in DOCS.items():
        (root / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "docs" / name).write_text(text, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(index_module, "load_dense_encoder", lambda path: HashEncoder())
        cli.main(["index", str(root / "docs"), "--out", str(root / "idx"), "--method", "hybrid", "--encoder", "x"])
    return root / "idx"


@pytest.fixture
def idx(built, tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(index_module, "load_dense_encoder", lambda path: HashEncoder())
    shutil.copytree(built, tmp_path / "idx")
    return tmp_path / "idx"


def search_error(capsys, idx: Path) -> str:
    """The one stderr line of a failed `lmstack search` (exit code 2, no traceback)."""
    with pytest.raises(SystemExit) as e:
        cli.main(["search", str(idx), "--query", "green tea"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err.strip()


def _cut(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


@pytest.mark.parametrize("name", ["data.csc.index.npy", "indices.csc.index.npy", "indptr.csc.index.npy"])
@pytest.mark.parametrize("keep", [-4, 40, 0])  # a few bytes short, inside the header, empty
def test_a_truncated_bm25_array_is_named(capsys, idx, name, keep):
    path = idx / "bm25" / name
    _cut(path, keep if keep >= 0 else path.stat().st_size + keep)
    err = search_error(capsys, idx)
    assert err.startswith(f"lmstack search: error: {path}: ") and "truncated" in err and "lmstack index" in err


def test_an_array_longer_than_its_header_is_named(capsys, idx):
    array = idx / "bm25" / "data.csc.index.npy"
    array.write_bytes(array.read_bytes() + b"\0" * 8)
    assert f"{array}: corrupt (longer than its header says)" in search_error(capsys, idx)


@pytest.mark.parametrize("name", ["vocab.index.json", "params.index.json"])
def test_a_truncated_bm25_json_is_named(capsys, idx, name):
    path = idx / "bm25" / name
    _cut(path, path.stat().st_size - 5)
    err = search_error(capsys, idx)
    assert err.startswith(f"lmstack search: error: {path}: the BM25 index is truncated or corrupt")


@pytest.mark.parametrize("keep", [-4, 20, 0])
def test_a_truncated_faiss_file_is_named(capsys, idx, keep):
    path = idx / "dense.faiss"
    _cut(path, keep if keep >= 0 else path.stat().st_size + keep)
    err = search_error(capsys, idx)
    assert err.startswith(f"lmstack search: error: {path}: truncated or corrupt") and "lmstack index" in err


def test_a_missing_part_is_named(capsys, idx):
    (idx / "dense.faiss").unlink()
    assert f"{idx / 'dense.faiss'}: the FAISS index file is missing" in search_error(capsys, idx)
    shutil.rmtree(idx / "bm25")
    assert f"{idx / 'bm25'}: the BM25 index folder is missing" in search_error(capsys, idx)


def test_passages_cut_at_a_line_end_disagree_with_the_manifest(capsys, idx):
    lines = (idx / "passages.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (idx / "passages.jsonl").write_text("".join(lines[:4]), encoding="utf-8")
    assert f"{idx / 'passages.jsonl'}: holds 4 passages, the manifest 6" in search_error(capsys, idx)
    (idx / "passages.jsonl").write_text("".join(lines)[:-10], encoding="utf-8")  # cut inside the last record
    assert f"{idx / 'passages.jsonl'}:6: not valid JSON" in search_error(capsys, idx)


def test_an_intact_copy_still_searches(idx):
    hits = Retriever.load(idx).search("green tea number 3", k=2)
    assert hits[0][0] == "d3.txt#0"
    with pytest.raises(LmstackError, match="not an lmstack index"):
        Retriever.load(idx / "bm25")
