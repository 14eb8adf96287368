"""File-system durability helpers: what the agent creates survives a power cut.

POSIX makes a new name durable only when its folder is fsynced: a file's own
fsync keeps its data, not its entry, and a folder made with `mkdir -p` can
vanish at a power cut with everything later written into it (FAT, ext2 and
other filesystems without a journal do exactly that).  So every folder the
agent creates goes through `make_dirs`, every file it must not lose is
written with `replace_file` (or the same steps), and a row is acknowledged
only after those calls returned.
"""
from __future__ import annotations

import os
from pathlib import Path


def sync_dir(folder: Path) -> None:
    """fsync a folder, so a file created, renamed or removed in it survives a power cut."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(folder: str | Path, mode: int = 0o777) -> list[Path]:
    """Create `folder` and its missing parents durably; return the folders created, outermost first.

    Each folder created is followed by an fsync of its parent, so after this
    returns a power cut cannot take any of them away.  Folders that already
    existed are left alone (no fsync: nothing of ours to make durable).  OSError
    propagates as from mkdir (a file in the way, no permission, a full disk).
    """
    folder = Path(folder)
    if folder.is_dir():
        return []
    missing: list[Path] = []
    p = folder
    while not os.path.lexists(p) and p.parent != p:
        missing.append(p)
        p = p.parent
    missing.reverse()
    for d in missing or [folder]:       # nothing missing: the name is taken, mkdir says by what
        try:
            d.mkdir(mode)
        except FileExistsError:
            if not d.is_dir():
                raise
            # made by someone else meanwhile: the fsync of its parent is still ours to do
        sync_dir(d.parent)
    return missing


def replace_file(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` whole or not at all, durably: temp name, fsync, rename, fsync of the folder.

    After a power cut `path` holds either its old content or `data`, never a mix.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    sync_dir(path.parent)
