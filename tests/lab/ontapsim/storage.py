"""Volume data on disk: DIR/volumes/<svm>/<volume>/ with snapshots under .snapshot/<name>/.

On btrfs a volume is a subvolume and a snapshot a read-only subvolume snapshot (instant, like
WAFL); elsewhere a snapshot is a `cp --reflink=auto` copy made read-only, sharing files unchanged
since the previous snapshot. A single-file restore writes into the existing file (same inode, so a
loop device or open handle sees the restored data); a volume restore keeps the volume directory
and replaces its contents.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

SNAPDIR = ".snapshot"


class StorageError(RuntimeError):
    pass


def _run(*cmd: str) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise StorageError(f"{' '.join(cmd)}: {res.stderr.strip() or res.returncode}")


def _mount_points() -> set[str]:
    """Mount points of this mount namespace (bind mounts of the same file system too, which ismount misses)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            return {line.split()[4].replace("\\040", " ") for line in fh if len(line.split()) > 4}
    except OSError:
        return set()


def fs_type(path: Path) -> str:
    res = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True, check=False)
    return res.stdout.strip() if res.returncode == 0 else "unknown"


def _chmod_w(path: str, writable: bool) -> None:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return
    mode = st.st_mode | stat.S_IWUSR if writable else st.st_mode & ~0o222
    if mode != st.st_mode:
        os.chmod(path, stat.S_IMODE(mode))


def _set_writable(root: Path, writable: bool) -> None:
    if not root.is_dir() or root.is_symlink():
        _chmod_w(str(root), writable)
        return
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*filenames, *dirnames, None]:
            _chmod_w(os.path.join(dirpath, name) if name else dirpath, writable)


class Storage:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "volumes"
        self.root.mkdir(parents=True, exist_ok=True)
        self.btrfs = fs_type(self.root) == "btrfs"

    @property
    def kind(self) -> str:
        return "btrfs" if self.btrfs else "reflink"

    def volume_dir(self, svm: str, volume: str) -> Path:
        return self.root / svm / volume

    def snapshot_dir(self, svm: str, volume: str, snapshot: str) -> Path:
        return self.volume_dir(svm, volume) / SNAPDIR / snapshot

    def ensure_volume(self, svm: str, volume: str) -> Path:
        vdir = self.volume_dir(svm, volume)
        if not vdir.exists():
            vdir.parent.mkdir(parents=True, exist_ok=True)
            if self.btrfs:
                _run("btrfs", "subvolume", "create", str(vdir))
            else:
                vdir.mkdir()
        snaps = vdir / SNAPDIR
        if not snaps.exists():
            if self.btrfs:
                # A nested subvolume shows up in snapshots of its parent as one empty
                # directory, so snapshots never carry older snapshots' data.
                _run("btrfs", "subvolume", "create", str(snaps))
            else:
                snaps.mkdir()
        return vdir

    def ensure_file(self, svm: str, volume: str, name: str, size: int) -> Path:
        """A LUN's backing file (sparse)."""
        path = self.ensure_volume(svm, volume) / name
        if not path.exists():
            with open(path, "wb") as fh:
                fh.truncate(size)
        return path

    def used_bytes(self, svm: str, volume: str) -> int:
        total = 0
        vdir = self.volume_dir(svm, volume)
        for dirpath, dirnames, filenames in os.walk(vdir):
            if Path(dirpath) == vdir and SNAPDIR in dirnames:
                dirnames.remove(SNAPDIR)
            for name in filenames:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
                except OSError:
                    pass
        return total

    def _entries(self, src: Path) -> list[str]:
        return [str(src / e) for e in sorted(os.listdir(src)) if e != SNAPDIR]

    def create_snapshot(self, svm: str, volume: str, snapshot: str, previous: str | None = None,
                        previous_time: float | None = None) -> None:
        """PREVIOUS (the volume's newest snapshot, taken at PREVIOUS_TIME) lets files unchanged
        since then be shared with it."""
        vdir = self.ensure_volume(svm, volume)
        dest = vdir / SNAPDIR / snapshot
        if dest.exists():
            self._remove(dest)
        if self.btrfs:
            _run("btrfs", "subvolume", "snapshot", "-r", str(vdir), str(dest))
            return
        prev = vdir / SNAPDIR / previous if previous else None
        usable = prev is not None and prev.is_dir() and previous_time is not None
        self._snapshot_tree(vdir, dest, prev if usable else None, previous_time or 0.0)
        _set_writable(dest, False)

    def _snapshot_tree(self, vdir: Path, dest: Path, prev: Path | None, prev_time: float) -> None:
        """Copy the active file system into DEST. Without btrfs, a file unchanged since the previous
        snapshot becomes a hard link to that snapshot's copy: both are read-only, so sharing is
        safe and big unchanged images cost nothing. "Unchanged" = same size, mode, owner and mtime
        as the copy (cp -a keeps mtimes) AND last modified over a second before the previous
        snapshot began, because file systems stamp mtimes with a coarse clock (a write just after
        a snapshot could otherwise keep the old mtime). Other files are copied with
        cp -a --reflink=auto (sparse-aware)."""
        stable_before_ns = int((prev_time - 1) * 1e9)
        mounts = _mount_points()
        dest.mkdir(parents=True)
        to_copy: list[str] = []
        dirs: list[str] = []
        for dirpath, dirnames, filenames in os.walk(vdir):
            rel_dir = os.path.relpath(dirpath, vdir)
            if rel_dir == ".":
                if SNAPDIR in dirnames:
                    dirnames.remove(SNAPDIR)
                rel_dir = ""
            for d in list(dirnames):
                rel = os.path.join(rel_dir, d)
                if os.path.islink(os.path.join(dirpath, d)):
                    to_copy.append(rel)
                elif os.path.abspath(os.path.join(dirpath, d)) in mounts:
                    # another file system mounted inside the volume (as another volume at a junction): a
                    # snapshot never holds its data, only the empty directory, as with btrfs subvolumes
                    os.mkdir(dest / rel)
                    dirnames.remove(d)
                else:
                    os.mkdir(dest / rel)
                    dirs.append(rel)
            for name in filenames:
                rel = os.path.join(rel_dir, name)
                if not (prev is not None and _same_file(vdir / rel, prev / rel, stable_before_ns)
                        and _link(prev / rel, dest / rel)):
                    to_copy.append(rel)
        for i in range(0, len(to_copy), 500):
            # --parents recreates the relative path under DEST (its directories already exist).
            res = subprocess.run(["cp", "-a", "--reflink=auto", "--parents", *to_copy[i:i + 500], str(dest) + "/"],
                                 cwd=vdir, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                raise StorageError(f"cp into {dest}: {res.stderr.strip()}")
        for rel in reversed(dirs):  # children first, so their times stay as copied
            shutil.copystat(vdir / rel, dest / rel, follow_symlinks=False)
            if os.geteuid() == 0:
                st = os.lstat(vdir / rel)
                os.chown(dest / rel, st.st_uid, st.st_gid)

    def _copy_into(self, src: Path, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        entries = self._entries(src)
        if entries:
            _run("cp", "-a", "--reflink=auto", *entries, str(dest) + "/")

    def _remove(self, path: Path) -> None:
        if self.btrfs and _is_subvolume(path):
            _run("btrfs", "subvolume", "delete", str(path))
            return
        # Unlinking needs writable directories only; files keep their read-only mode because
        # their inodes may be shared with other snapshots.
        if path.is_dir() and not path.is_symlink():
            _chmod_w(str(path), True)
            for dirpath, dirnames, _files in os.walk(path):
                for d in dirnames:
                    _chmod_w(os.path.join(dirpath, d), True)
            shutil.rmtree(path)
        else:
            path.unlink()

    def drop_from_snapshot(self, svm: str, volume: str, snapshot: str, rel: str) -> bool:
        """Fault model: take REL out of a snapshot after the fact (a LUN moved away or a file that was not there
        when the snapshot was taken). True when something was removed."""
        target = self.snapshot_dir(svm, volume, snapshot) / rel.lstrip("/")
        if not target.exists() and not target.is_symlink():
            return False
        root = self.snapshot_dir(svm, volume, snapshot)
        if self.btrfs and _is_subvolume(root):
            _run("btrfs", "property", "set", "-ts", str(root), "ro", "false")
            try:
                self._remove(target)
            finally:
                _run("btrfs", "property", "set", "-ts", str(root), "ro", "true")
            return True
        _chmod_w(str(target.parent), True)
        try:
            self._remove(target)
        finally:
            _chmod_w(str(target.parent), False)
        return True

    def delete_snapshot(self, svm: str, volume: str, snapshot: str) -> None:
        path = self.snapshot_dir(svm, volume, snapshot)
        if path.exists():
            self._remove(path)

    def rename_snapshot(self, svm: str, volume: str, old: str, new: str) -> None:
        src = self.snapshot_dir(svm, volume, old)
        if not src.exists():
            return
        # Renaming a directory rewrites its ".." entry: it must be writable (non-root).
        if not self.btrfs:
            os.chmod(src, stat.S_IMODE(os.stat(src).st_mode) | stat.S_IWUSR)
        os.rename(src, self.snapshot_dir(svm, volume, new))
        if not self.btrfs:
            dst = self.snapshot_dir(svm, volume, new)
            os.chmod(dst, stat.S_IMODE(os.stat(dst).st_mode) & ~0o222)

    def restore_file(self, svm: str, volume: str, snapshot: str, path: str, restore_path: str) -> None:
        """Copy <snapshot>/<path> over <volume>/<restore_path> in place (same inode if it exists)."""
        self.restore_file_from((svm, volume, snapshot), path, (svm, volume), restore_path)

    def restore_file_from(self, src_snap: tuple[str, str, str], path: str, dst_vol: tuple[str, str],
                          restore_path: str, src_root: Path | None = None) -> None:
        """Copy <src volume>/.snapshot/<snapshot>/<path> over <dst volume>/<restore_path> (a SnapMirror restore
        when the two volumes differ)."""
        src = self.source_snapshot_dir(src_snap, src_root) / path.lstrip("/")
        dst = self.volume_dir(*dst_vol) / restore_path.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        _run("cp", "--reflink=auto", "--sparse=always", str(src), str(dst))
        os.chmod(dst, stat.S_IMODE(os.stat(src).st_mode) | stat.S_IWUSR)

    def restore_volume(self, svm: str, volume: str, snapshot: str) -> None:
        """Make the active file system equal to the snapshot (the volume dir itself is kept)."""
        self.restore_volume_from((svm, volume, snapshot), (svm, volume))

    def restore_volume_from(self, src_snap: tuple[str, str, str], dst_vol: tuple[str, str],
                            src_root: Path | None = None) -> None:
        """Make DST_VOL's active file system equal to a snapshot (of another volume for a SnapMirror restore;
        SRC_ROOT: the volumes/ directory of the peer cluster that holds it)."""
        vdir = self.volume_dir(*dst_vol)
        snap = self.source_snapshot_dir(src_snap, src_root)
        for entry in self._entries(vdir):
            p = Path(entry)
            if p.is_dir() and not p.is_symlink():
                self._remove(p)
            else:
                p.unlink()
        self._copy_into(snap, vdir)
        _set_writable_top(vdir)

    def source_snapshot_dir(self, src: tuple[str, str, str], src_root: Path | None) -> Path:
        if src_root is None:
            return self.snapshot_dir(*src)
        return src_root / src[0] / src[1] / SNAPDIR / src[2]

    def copy_snapshot(self, src: tuple[str, str, str], dst: tuple[str, str, str],
                      src_root: Path | None = None) -> None:
        """Replicate a snapshot into another volume's .snapshot (SnapMirror); SRC_ROOT: the volumes/ directory
        of the peer cluster that holds the source (a cross-cluster transfer copies, it shares nothing)."""
        src_dir = self.source_snapshot_dir(src, src_root)
        dst_dir = self.snapshot_dir(*dst)
        self.ensure_volume(dst[0], dst[1])
        if dst_dir.exists():
            self._remove(dst_dir)
        if src_root is not None:
            dst_dir.mkdir(parents=True)
            entries = self._entries(src_dir)
            if entries:
                _run("cp", "-a", "--reflink=auto", "--sparse=always", *entries, str(dst_dir) + "/")
            _set_writable(dst_dir, False)
            return
        if self.btrfs and _is_subvolume(src_dir):
            _run("btrfs", "subvolume", "snapshot", "-r", str(src_dir), str(dst_dir))
            return
        # Both snapshots are read-only, so the replica can share the source's files (cp -l).
        dst_dir.mkdir(parents=True)
        entries = self._entries(src_dir)
        if entries:
            _run("cp", "-a", "-l", *entries, str(dst_dir) + "/")
        _set_writable(dst_dir, False)

    def wipe(self) -> None:
        for svm_dir in list(self.root.iterdir()) if self.root.exists() else []:
            for vdir in list(svm_dir.iterdir()):
                snaps = vdir / SNAPDIR
                if snaps.exists():
                    for s in list(snaps.iterdir()):
                        self._remove(s)
                    self._remove(snaps)
                self._remove(vdir)
            shutil.rmtree(svm_dir, ignore_errors=True)


def _set_writable_top(vdir: Path) -> None:
    # A restored tree comes from a read-only snapshot: give the owner write access back.
    for entry in os.listdir(vdir):
        if entry != SNAPDIR:
            _set_writable(vdir / entry, True)


def _same_file(cur: Path, old: Path, stable_before_ns: int) -> bool:
    try:
        a, b = os.lstat(cur), os.lstat(old)
    except OSError:
        return False
    return (stat.S_ISREG(a.st_mode) and stat.S_ISREG(b.st_mode) and a.st_size == b.st_size
            and a.st_mtime_ns < stable_before_ns
            and a.st_mtime_ns == b.st_mtime_ns and (a.st_mode & ~0o222) == (b.st_mode & ~0o222)
            and a.st_uid == b.st_uid and a.st_gid == b.st_gid)


def _link(src: Path, dst: Path) -> bool:
    try:
        os.link(src, dst)
        return True
    except OSError:
        return False


def _is_subvolume(path: Path) -> bool:
    try:
        return os.stat(path).st_ino == 256
    except OSError:
        return False
