"""A cutfs mount of the test's own: mount it, cut the power, boot it again (see cutfs.py)."""
from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

CUTFS = Path(__file__).with_name("cutfs.py")


def mounted(path: Path) -> bool:
    """Whether `path` is a mount point (os.path.ismount says no for a mount whose server died)."""
    target = os.path.realpath(path)
    with open("/proc/self/mounts", encoding="utf-8") as f:
        return any(line.split()[1].replace("\\040", " ") == target for line in f)


class CutMount:
    """`root` is the mounted filesystem; `cut()` is a power cut followed by a boot.

    The caller kills every process using the mount before a cut (a power cut
    stops them too); `close()` cuts and unmounts for good.
    """

    def __init__(self, workdir: Path):
        self.backing = workdir / "disk"           # the durable image (what survives a cut)
        self.root = workdir / "fs"
        self.log = workdir / "cutfs.log"
        self.proc: subprocess.Popen | None = None
        self.cuts = 0

    def mount(self, timeout: float = 20.0) -> "CutMount":
        self.root.mkdir(exist_ok=True)
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen([sys.executable, str(CUTFS), str(self.backing), str(self.root)],
                                         stdout=subprocess.PIPE, stderr=err)
        # cutfs prints "ready" from FUSE's init: the kernel has the mount and requests are served
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            self._kill()
            raise AssertionError(f"cutfs did not mount {self.root}: {self.log.read_text(errors='replace')[-2000:]}")
        assert mounted(self.root)
        return self

    def cut(self) -> None:
        """The power goes and comes back: everything not fsynced is gone, then the disk boots."""
        self._kill()
        self.cuts += 1
        self.mount()

    def close(self) -> None:
        self._kill()

    def _kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()                      # the server's memory is what was not yet on the disk
            self.proc.wait()
            self.proc.stdout.close()
            self.proc = None
        if mounted(self.root):                   # a dead FUSE mount: stat() fails, /proc/mounts still has it
            subprocess.run(["umount", "-l", str(self.root)], check=True)
        assert not mounted(self.root), f"{self.root} is still mounted"


@pytest.fixture
def cutfs(tmp_path):
    """A mounted cutfs in tmp_path; unmounted at the end whatever happens."""
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse on this machine: the power-cut filesystem cannot mount")
    m = CutMount(tmp_path).mount()
    try:
        yield m
    finally:
        m.close()
