"""File-system durability helpers shared by the buffer and the spec-file writer."""
from __future__ import annotations

import os
from pathlib import Path


def sync_dir(folder: Path) -> None:
    """fsync a folder, so a file created or renamed in it survives a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
