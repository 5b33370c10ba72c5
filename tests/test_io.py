"""Atomic writes: all or nothing, with ordinary permissions."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from lmstack.io import atomic_dir, atomic_open, atomic_path, umask, write_json


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write("new, half written")
            raise RuntimeError
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_files_and_folders_get_umask_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic_open(tmp_path / "f.json") as f:
            f.write("{}")
        with atomic_dir(tmp_path / "d") as d:
            (d / "x").write_text("1")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "f.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_atomic_dir_replaces_whole_folder(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "stale").write_text("x")
    with atomic_dir(tmp_path / "d") as d:
        (d / "fresh").write_text("y")
    assert sorted(os.listdir(tmp_path / "d")) == ["fresh"]
    assert sorted(os.listdir(tmp_path)) == ["d"]


def _killed_writer_pid() -> int:
    """The pid of a process that has exited (so no live writer owns it)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temp_names_carry_the_host_and_pid(tmp_path):
    seen = []
    with atomic_dir(tmp_path / "idx") as d:
        seen.append(d.name)
    with atomic_path(tmp_path / "w.bin") as p:
        seen.append(p.name)
        p.write_bytes(b"1")
    for name, target in zip(seen, ("idx", "w.bin")):
        assert name.startswith(f".{target}.") and f"-{os.getpid()}-" in name and name.endswith(".tmp")


def test_stale_temps_of_killed_runs_are_removed_on_the_next_write(tmp_path, monkeypatch):
    """Temps of a dead pid, and legacy/foreign ones older than STALE_HOURS, go; a live writer's, and other
    targets', stay."""
    from lmstack import io

    monkeypatch.setattr(io, "_SEEN", {})
    host, dead, old = io._HOST, _killed_writer_pid(), time.time() - (io.STALE_HOURS + 1) * 3600
    killed_index = tmp_path / f".idx.{host}-{dead}-abcd1234.tmp"  # a killed `lmstack index`: a folder
    (killed_index / "bm25").mkdir(parents=True)
    (killed_index / "bm25" / "data.npy").write_bytes(b"x" * 1000)
    killed_file = tmp_path / f".idx.{host}-{dead}-zzzz_999.tmp"
    killed_file.write_bytes(b"half")
    legacy_old = tmp_path / ".idx.k3j4h5g6.tmp"  # before pids were in the name: only age tells
    legacy_old.mkdir()
    os.utime(legacy_old, (old, old))
    legacy_new = tmp_path / ".idx.q1w2e3r4.tmp"
    legacy_new.mkdir()
    alive = tmp_path / f".idx.{host}-{os.getppid()}-aaaa1111.tmp"  # a live writer (our parent process)
    alive.mkdir()
    other_host = tmp_path / f".idx.elsewhere-{dead}-bbbb2222.tmp"  # pid of another machine: unknowable
    other_host.mkdir()
    other_target = tmp_path / f".other.{host}-{dead}-cccc3333.tmp"
    other_target.mkdir()
    with atomic_dir(tmp_path / "idx") as d:
        (d / "manifest.json").write_text("{}")
    left = sorted(os.listdir(tmp_path))
    assert left == sorted(["idx", legacy_new.name, alive.name, other_host.name, other_target.name])
    # the foreign host's temp goes once it is old; the other target's on its next write
    os.utime(other_host, (old, old))
    monkeypatch.setattr(io, "_SEEN", {})
    with atomic_open(tmp_path / "other") as f:
        f.write("x")
    with atomic_dir(tmp_path / "idx"):
        pass
    assert sorted(os.listdir(tmp_path)) == sorted(["idx", "other", legacy_new.name, alive.name])


def test_a_stale_temp_with_a_recent_file_inside_is_not_old(tmp_path, monkeypatch):
    """Age is the newest change anywhere in the temp: a long build still writing into it is kept."""
    from lmstack import io

    monkeypatch.setattr(io, "_SEEN", {})
    old = time.time() - (io.STALE_HOURS + 1) * 3600
    legacy = tmp_path / ".idx.abcdefgh.tmp"
    (legacy / "sub").mkdir(parents=True)
    (legacy / "sub" / "vectors.npy").write_bytes(b"recent")
    os.utime(legacy, (old, old))
    os.utime(legacy / "sub", (old, old))
    assert io.remove_stale_temps(tmp_path / "idx") == []
    assert legacy.exists()


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_every_atomic_writer_gives_the_umask_mode(tmp_path, mask):
    """atomic_open, write_json, atomic_path (even when the writer makes the file anew at 0600, as safetensors
    does) and the files and folders inside an atomic_dir all get 0666 / 0777 & ~umask."""
    old = os.umask(mask)
    try:
        with atomic_open(tmp_path / "a.txt") as f:
            f.write("a")
        with atomic_open(tmp_path / "b.bin", "wb") as f:
            f.write(b"b")
        write_json(tmp_path / "c.json", {"c": 1})
        with atomic_path(tmp_path / "d.safetensors") as p:
            p.unlink()
            os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o600))
        with atomic_dir(tmp_path / "e") as d:
            (d / "sub").mkdir()
            fd, made = tempfile.mkstemp(dir=d / "sub")  # 0600, as mkstemp makes them
            os.close(fd)
            (d / "run.sh").write_text("#!/bin/sh\n")
            (d / "run.sh").chmod(0o700)
    finally:
        os.umask(old)
    for name in ("a.txt", "b.bin", "c.json", "d.safetensors", f"e/sub/{Path(made).name}"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask, name
    for name in ("e", "e/sub", "e/run.sh"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o777 & ~mask, name


def test_umask_is_read_without_changing_it():
    old = os.umask(0o027)
    try:
        assert umask() == 0o027 and umask() == 0o027
    finally:
        os.umask(old)
