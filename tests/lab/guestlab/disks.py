"""Disk images for lab guests: ext4 data disks and reading files out of them offline."""

from __future__ import annotations

import os
import shutil
import subprocess

WRITER_LOG = "/log.txt"  # the guest's /data/log.txt, i.e. /log.txt on the data disk


def _tool(name: str) -> str:
    path = shutil.which(name) or (f"/sbin/{name}" if os.path.exists(f"/sbin/{name}") else None)
    if path is None:
        raise RuntimeError(f"{name} is missing: install e2fsprogs")
    return path


def make_data_disk(path: str, size_mib: int = 64, label: str = "kvsdata") -> str:
    """Create an ext4 file system image (whole disk, no partition table) at path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(int(size_mib) * 1024 * 1024)
    subprocess.run([_tool("mkfs.ext4"), "-F", "-q", "-L", label, "-E", "lazy_itable_init=0,lazy_journal_init=0",
                    path], check=True, capture_output=True)
    return path


def read_disk_file(image: str, path: str = WRITER_LOG) -> bytes:
    """Read a file from an (unmounted) ext4 image with debugfs -R 'cat PATH'."""
    proc = subprocess.run([_tool("debugfs"), "-R", f"cat {path}", image], capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"debugfs cat {path} on {image} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def fsck_disk(image: str) -> tuple[int, str]:
    """e2fsck -fn (read-only check); returns (exit code, output). 0 = clean."""
    proc = subprocess.run([_tool("e2fsck"), "-fn", image], capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def parse_writer_log(data: bytes | str) -> list[int]:
    """Sequence numbers of the writer's complete lines ('<n> <epoch>')."""
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    numbers = []
    for line in text.split("\n")[:-1]:  # the last element is '' or a line still being written
        head = line.split(" ", 1)[0]
        if head.isdigit():
            numbers.append(int(head))
    return numbers


def writer_log_gaps(numbers: list[int]) -> list[tuple[int, int]]:
    """(previous, next) pairs where the numbering is not +1: empty for an intact log."""
    return [(a, b) for a, b in zip(numbers, numbers[1:]) if b != a + 1]
