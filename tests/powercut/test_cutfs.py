"""The power-cut filesystem itself: what a cut keeps (what was fsynced) and what it drops."""
from __future__ import annotations

import mmap
import os
import sqlite3
import subprocess
import sys

import pytest
from cutmount import cutfs  # noqa: F401 (fixture)

from edge_agent.fsutil import make_dirs, replace_file, sync_dir


def write(path, data: bytes, sync: bool = True) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        if sync:
            os.fsync(f.fileno())


def test_file_data_survives_only_as_of_its_last_fsync(cutfs):
    root = cutfs.root
    write(root / "synced", b"a" * 10000)
    write(root / "unsynced", b"b" * 100, sync=False)
    write(root / "datasync", b"", sync=False)
    with open(root / "datasync", "r+b") as f:
        f.write(b"d" * 5000)
        os.fdatasync(f.fileno())
    with open(root / "synced", "r+b") as f:           # after the fsync: overwritten, grown, then cut short
        f.seek(4096)
        f.write(b"X" * 8000)
        f.truncate(6000)
    sync_dir(root)
    write(root / "late", b"late")                      # created after the folder's fsync: its entry is not durable
    cutfs.cut()
    assert (root / "synced").read_bytes() == b"a" * 10000
    assert (root / "unsynced").read_bytes() == b""     # the entry was synced, the data never
    assert (root / "datasync").read_bytes() == b"d" * 5000
    assert not (root / "late").exists()


def test_truncation_is_undone_unless_fsynced(cutfs):
    root = cutfs.root
    write(root / "f", b"z" * 9000)
    sync_dir(root)
    with open(root / "f", "r+b") as f:
        f.truncate(100)
        f.truncate(9000)                               # grown again: the middle is zeros now
    cutfs.cut()
    assert (root / "f").read_bytes() == b"z" * 9000
    with open(root / "f", "r+b") as f:
        f.truncate(100)
        f.truncate(9000)
        os.fsync(f.fileno())
    cutfs.cut()
    assert (root / "f").read_bytes() == b"z" * 100 + bytes(8900)


def test_names_survive_only_as_of_their_folders_last_fsync(cutfs):
    root = cutfs.root
    for name in ("stay", "gone", "moved"):
        write(root / name, name.encode())
    sync_dir(root)
    (root / "gone").unlink()
    os.rename(root / "moved", root / "renamed")
    write(root / "new", b"new")                        # fsynced file, unsynced entry
    os.mkdir(root / "dir")
    cutfs.cut()
    assert sorted(os.listdir(root)) == ["gone", "moved", "stay"]
    assert (root / "gone").read_bytes() == b"gone"     # the unlink was never durable
    # the same changes, made durable
    (root / "gone").unlink()
    os.rename(root / "moved", root / "renamed")
    write(root / "new", b"new")
    sync_dir(root)
    cutfs.cut()
    assert sorted(os.listdir(root)) == ["new", "renamed", "stay"]
    assert (root / "renamed").read_bytes() == b"moved"


def test_a_folder_made_without_fsync_of_its_parent_vanishes_with_its_files(cutfs):
    """What `mkdir -p` does to an outbox: each file was fsynced, its folder too, but not the parent."""
    out = cutfs.root / "var" / "outbox"
    out.mkdir(parents=True)
    write(out / "f1.txt", b"complete")
    sync_dir(out)
    cutfs.cut()
    assert not (cutfs.root / "var").exists()


def test_make_dirs_keeps_every_folder_it_created(cutfs):
    (cutfs.root / "var").mkdir()
    sync_dir(cutfs.root)
    out = cutfs.root / "var" / "lib" / "outbox"
    assert make_dirs(out) == [cutfs.root / "var" / "lib", out]
    assert make_dirs(out) == []
    write(out / "f1.txt", b"complete")
    sync_dir(out)
    replace_file(cutfs.root / "var" / "mark", b"7\n")
    cutfs.cut()
    assert (out / "f1.txt").read_bytes() == b"complete"
    assert (cutfs.root / "var" / "mark").read_bytes() == b"7\n"
    with pytest.raises(NotADirectoryError):
        make_dirs(out / "f1.txt" / "sub")


SQLITE_WRITER = """
import os, sqlite3, sys
path, mode = sys.argv[1], sys.argv[2]
db = sqlite3.connect(path, isolation_level=None)
assert db.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
db.execute(f"PRAGMA synchronous={mode}")
db.execute("CREATE TABLE t(x INTEGER PRIMARY KEY, body BLOB)")
for _ in range(200):
    db.execute("INSERT INTO t(body) VALUES (?)", (os.urandom(300),))
reader = sqlite3.connect(path)                       # a second connection: through the shared -shm (mmap)
assert reader.execute("SELECT count(*) FROM t").fetchone() == (200,)
reader.close()
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
for _ in range(20):
    db.execute("INSERT INTO t(body) VALUES (?)", (os.urandom(300),))
os._exit(0)                                          # no close, no checkpoint: as a killed process leaves it
"""


def test_sqlite_wal_commits_survive_a_cut_as_of_the_last_sync(cutfs):
    """FULL syncs every commit; NORMAL only at a checkpoint.  The file is whole after the cut either way."""
    for mode in ("FULL", "NORMAL"):
        subprocess.run([sys.executable, "-c", SQLITE_WRITER, str(cutfs.root / f"{mode}.sqlite"), mode],
                       check=True, timeout=60)
    with open(cutfs.root / "FULL.sqlite-shm", "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        assert len(m) >= 32768                        # a shared mapping of a file on cutfs works
    cutfs.cut()
    kept = {}
    for mode in ("FULL", "NORMAL"):
        db = sqlite3.connect(cutfs.root / f"{mode}.sqlite")
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        kept[mode] = db.execute("SELECT count(*) FROM t").fetchone()[0]
        db.close()
    assert kept == {"FULL": 220, "NORMAL": 200}
