"""cutfs: a FUSE filesystem that keeps only what was fsynced, so killing it is a power cut.

    python tests/powercut/cutfs.py BACKING MOUNTPOINT      # prints "ready" once mounted

Everything lives in the server's memory while it runs; BACKING holds the
*durable* image, the state a disk would show after the power went:

- file data, size, mode and times reach BACKING only on fsync/fdatasync of that
  file (fdatasync: data and size, not times); every write, truncation or
  chmod since then exists only in memory;
- a directory's entries (create, mkdir, rename in or out, unlink, rmdir)
  reach BACKING only on fsync of that directory; a new file or folder whose
  entry is made durable that way but was never fsynced itself comes back
  empty (the inode exists, its data does not);
- so a folder created without an fsync of its parent vanishes at a cut with
  everything in it, whatever was fsynced inside.

This is the strict POSIX contract (what FAT or ext2 on a CF card gives), not
what a journaling filesystem usually does.  A *cut* is `kill -9` of this
process (after killing every process that uses the mount) and a lazy unmount;
starting it again on the same BACKING boots the durable image, dropping
anything not reachable from the root (as fsck would).

What SQLite in WAL mode needs is here: byte-range reads and writes, ftruncate,
fsync and fdatasync on files, fsync on folders (FUSE_FSYNCDIR), shared
writable mmap of the -shm file (the kernel's page cache, no direct_io), and
POSIX advisory locks (left to the kernel: no `lock` operation).  Hard links
and symlinks are refused.  Single-threaded: every request sees a consistent
state.
"""
from __future__ import annotations

import errno
import json
import os
import stat
import sys
import time
from pathlib import Path

import mfusepy as fuse

PAGE = 4096
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


class Node:
    """One inode: a file (`data`) or a folder (`entries`), with what reached the backing already."""

    __slots__ = ("ino", "mode", "data", "entries", "dirty", "atime", "mtime", "ctime", "nlink", "durable")

    def __init__(self, ino: int, mode: int, now: int):
        self.ino = ino
        self.mode = mode
        self.data = bytearray() if stat.S_ISREG(mode) else None
        self.entries: dict[str, Node] | None = {} if stat.S_ISDIR(mode) else None
        self.dirty: set[int] = set()      # pages written or resized since the last fsync
        self.atime = self.mtime = self.ctime = now
        self.nlink = 0
        self.durable = False              # has an image in the backing

    @property
    def is_dir(self) -> bool:
        return self.entries is not None

    def touch_pages(self, lo: int, hi: int) -> None:
        if hi > lo:
            self.dirty.update(range(lo // PAGE, (hi - 1) // PAGE + 1))


class Backing:
    """The durable image: `<ino>.meta` (JSON: mode, times, entries) and `<ino>.data` per inode."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _meta(self, ino: int) -> Path:
        return self.root / f"{ino}.meta"

    def _data(self, ino: int) -> Path:
        return self.root / f"{ino}.data"

    def save_meta(self, node: Node) -> None:
        meta = {"mode": node.mode, "atime": node.atime, "mtime": node.mtime, "ctime": node.ctime}
        if node.is_dir:
            meta["entries"] = {name: child.ino for name, child in node.entries.items()}
        tmp = self.root / f".{node.ino}.meta.tmp"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, self._meta(node.ino))   # the backing itself never loses power: no fsync here

    def save_data(self, node: Node) -> None:
        path = self._data(node.ino)
        size = len(node.data)
        with open(path, "r+b" if path.exists() else "wb") as f:
            for page in sorted(node.dirty):
                off = page * PAGE
                if off < size:
                    f.seek(off)
                    f.write(node.data[off:off + PAGE])
            f.truncate(size)
        node.dirty.clear()

    def save_empty(self, node: Node) -> None:
        """The inode of a child whose entry became durable before the child was ever synced."""
        meta = {"mode": node.mode, "atime": node.atime, "mtime": node.mtime, "ctime": node.ctime}
        if node.is_dir:
            meta["entries"] = {}
        else:
            self._data(node.ino).write_bytes(b"")
        self._meta(node.ino).write_text(json.dumps(meta))
        node.durable = True

    def boot(self) -> tuple[Node, int]:
        """Load the durable tree (root inode 1); delete what is not reachable; return (root, next ino)."""
        inos = {int(p.name.split(".")[0]) for p in self.root.iterdir() if p.name[0].isdigit()}
        now = time.time_ns()
        if 1 not in inos:
            root = Node(1, stat.S_IFDIR | 0o755, now)
            self.save_meta(root)
            root.durable = True
            return root, 2
        nodes: dict[int, Node] = {}

        def load(ino: int) -> Node | None:
            if ino in nodes:
                return nodes[ino]
            try:
                meta = json.loads(self._meta(ino).read_text())
            except (OSError, ValueError):
                return None
            node = Node(ino, meta["mode"], now)
            node.atime, node.mtime, node.ctime = meta["atime"], meta["mtime"], meta["ctime"]
            node.durable = True
            nodes[ino] = node
            if node.is_dir:
                for name, child_ino in meta["entries"].items():
                    child = load(child_ino)
                    if child is not None:
                        node.entries[name] = child
                        child.nlink += 1
            else:
                try:
                    node.data = bytearray(self._data(ino).read_bytes())
                except FileNotFoundError:
                    pass
            return node

        root = load(1)
        root.nlink = 1
        for ino in inos - set(nodes):
            for p in (self._meta(ino), self._data(ino)):
                p.unlink(missing_ok=True)
        return root, max(inos) + 1


def fail(code: int):
    return fuse.FuseOSError(code)


class CutFS(fuse.Operations):
    use_ns = True

    def __init__(self, backing: Path):
        self.backing = Backing(backing)
        self.root, self.next_ino = self.backing.boot()
        self.handles: dict[int, Node] = {}
        self.next_fh = 1

    # ------------------------------------------------------------ helpers

    def _lookup(self, path: str) -> Node:
        node = self.root
        for part in path.strip("/").split("/"):
            if not part:
                continue
            if not node.is_dir:
                raise fail(errno.ENOTDIR)
            node = node.entries.get(part)
            if node is None:
                raise fail(errno.ENOENT)
        return node

    def _parent(self, path: str) -> tuple[Node, str]:
        head, _, name = path.rstrip("/").rpartition("/")
        parent = self._lookup(head or "/")
        if not parent.is_dir:
            raise fail(errno.ENOTDIR)
        return parent, name

    def _node(self, path: str | None, fh: int | None) -> Node:
        if fh:
            node = self.handles.get(fh)
            if node is not None:
                return node
        if path is None:
            raise fail(errno.EBADF)
        return self._lookup(path)

    def _new(self, path: str, mode: int) -> Node:
        parent, name = self._parent(path)
        if name in parent.entries:
            raise fail(errno.EEXIST)
        now = time.time_ns()
        node = Node(self.next_ino, mode, now)
        self.next_ino += 1
        node.nlink = 1
        parent.entries[name] = node
        parent.mtime = parent.ctime = now
        return node

    def _handle(self, node: Node) -> int:
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = node
        return fh

    def _resize(self, node: Node, length: int) -> None:
        old = len(node.data)
        if length < old:
            del node.data[length:]
        elif length > old:
            node.data.extend(bytes(length - old))
        node.touch_pages(min(old, length), max(old, length))
        node.mtime = node.ctime = time.time_ns()

    # ------------------------------------------------------------ lifecycle

    def init(self, path):
        print("ready", flush=True)

    def statfs(self, path):
        return {"f_bsize": PAGE, "f_frsize": PAGE, "f_blocks": 1 << 22, "f_bfree": 1 << 21,
                "f_bavail": 1 << 21, "f_files": 1 << 20, "f_ffree": 1 << 19, "f_namemax": 255}

    # ------------------------------------------------------------ attributes

    def getattr(self, path, fh=None):
        node = self._node(path, fh)
        size = len(node.data) if node.data is not None else PAGE
        return {"st_ino": node.ino, "st_mode": node.mode, "st_nlink": max(node.nlink, 2 if node.is_dir else 0),
                "st_size": size, "st_blocks": (size + 511) // 512, "st_blksize": PAGE,
                "st_atime": node.atime, "st_mtime": node.mtime, "st_ctime": node.ctime, "st_uid": 0, "st_gid": 0}

    def chmod(self, path, mode, fh=None):
        node = self._node(path, fh)
        node.mode = (node.mode & ~0o7777) | (mode & 0o7777)
        node.ctime = time.time_ns()

    def chown(self, path, uid, gid, fh=None):
        pass

    def utimens(self, path, times=None, fh=None):
        node = self._node(path, fh)
        now = time.time_ns()
        if times is None:
            node.atime = node.mtime = now
        else:
            for attr, value in zip(("atime", "mtime"), times):
                nsec = value % 10**9
                if nsec == UTIME_OMIT:
                    continue
                setattr(node, attr, now if nsec == UTIME_NOW else value)
        node.ctime = now

    def truncate(self, path, length, fh=None):
        node = self._node(path, fh)
        if node.is_dir:
            raise fail(errno.EISDIR)
        self._resize(node, length)

    # ------------------------------------------------------------ names

    def create(self, path, mode, flags=0):
        return self._handle(self._new(path, stat.S_IFREG | (mode & 0o7777)))

    def mknod(self, path, mode, dev):
        if not stat.S_ISREG(mode):
            raise fail(errno.EPERM)
        self._new(path, mode)

    def mkdir(self, path, mode):
        self._new(path, stat.S_IFDIR | (mode & 0o7777))

    def unlink(self, path):
        parent, name = self._parent(path)
        node = parent.entries.get(name)
        if node is None:
            raise fail(errno.ENOENT)
        if node.is_dir:
            raise fail(errno.EISDIR)
        del parent.entries[name]
        node.nlink -= 1
        parent.mtime = parent.ctime = time.time_ns()

    def rmdir(self, path):
        parent, name = self._parent(path)
        node = parent.entries.get(name)
        if node is None:
            raise fail(errno.ENOENT)
        if not node.is_dir:
            raise fail(errno.ENOTDIR)
        if node.entries:
            raise fail(errno.ENOTEMPTY)
        del parent.entries[name]
        node.nlink = 0
        parent.mtime = parent.ctime = time.time_ns()

    def rename(self, old, new):
        src_dir, src_name = self._parent(old)
        node = src_dir.entries.get(src_name)
        if node is None:
            raise fail(errno.ENOENT)
        dst_dir, dst_name = self._parent(new)
        if dst_dir is src_dir and dst_name == src_name:
            return
        target = dst_dir.entries.get(dst_name)
        if target is not None:
            if target.is_dir != node.is_dir:
                raise fail(errno.EISDIR if target.is_dir else errno.ENOTDIR)
            if target.is_dir and target.entries:
                raise fail(errno.ENOTEMPTY)
            target.nlink -= 1
        del src_dir.entries[src_name]
        dst_dir.entries[dst_name] = node
        now = time.time_ns()
        src_dir.mtime = src_dir.ctime = dst_dir.mtime = dst_dir.ctime = node.ctime = now

    def link(self, target, source):
        raise fail(errno.EPERM)

    def symlink(self, target, source):
        raise fail(errno.EPERM)

    # ------------------------------------------------------------ files

    def open(self, path, flags):
        node = self._lookup(path)
        if node.is_dir:
            raise fail(errno.EISDIR)
        if flags & os.O_TRUNC:
            self._resize(node, 0)
        return self._handle(node)

    def read(self, path, size, offset, fh):
        node = self._node(path, fh)
        return bytes(node.data[offset:offset + size])

    def write(self, path, data, offset, fh):
        node = self._node(path, fh)
        buf = node.data
        end = offset + len(data)
        if offset > len(buf):
            buf.extend(bytes(offset - len(buf)))
        buf[offset:end] = data
        node.touch_pages(offset, end)
        node.mtime = node.ctime = time.time_ns()
        return len(data)

    def flush(self, path, fh):
        pass            # close() promises nothing about durability

    def release(self, path, fh):
        self.handles.pop(fh, None)

    def fsync(self, path, datasync, fh):
        node = self._node(path, fh)
        self.backing.save_data(node)
        if not datasync or not node.durable:
            self.backing.save_meta(node)
            node.durable = True

    # ------------------------------------------------------------ folders

    def opendir(self, path):
        node = self._lookup(path)
        if not node.is_dir:
            raise fail(errno.ENOTDIR)
        return self._handle(node)

    def readdir(self, path, fh):
        node = self._node(path, fh)
        yield ".", {"st_mode": node.mode, "st_ino": node.ino}, 0
        yield "..", {"st_mode": stat.S_IFDIR}, 0
        for name, child in list(node.entries.items()):
            yield name, {"st_mode": child.mode, "st_ino": child.ino}, 0

    def releasedir(self, path, fh):
        self.handles.pop(fh, None)

    def fsyncdir(self, path, datasync, fh):
        node = self._node(path, fh)
        for child in node.entries.values():
            if not child.durable:
                self.backing.save_empty(child)
        self.backing.save_meta(node)
        node.durable = True


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: cutfs.py BACKING MOUNTPOINT", file=sys.stderr)
        return 2
    backing, mountpoint = Path(argv[0]).resolve(), argv[1]     # libfuse may chdir("/")
    fuse.FUSE(CutFS(backing), mountpoint, foreground=True, nothreads=True, use_ino=True, hard_remove=True,
              fsname="cutfs", subtype="cutfs", debug=bool(os.environ.get("CUTFS_DEBUG")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
