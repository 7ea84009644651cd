"""The collection tarball as `ansible-galaxy collection build` makes it from this checkout.

Used by the tarball test (what ships) and the execution environment test (what goes into the EE).
The tools are the venv's own (requirements-dev.txt), run as subprocesses exactly as a user runs them.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path
from typing import List

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """Path of a console script of the venv this test runs in (ansible-galaxy, ansible-builder)."""
    path = BIN / name
    if not path.exists():
        raise FileNotFoundError("%s is not installed in %s: run `make venv` (requirements-dev.txt)" % (name, BIN))
    return str(path)


def galaxy_meta() -> dict:
    with open(REPO / "galaxy.yml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def build_tarball(out_dir: Path) -> Path:
    """Run `ansible-galaxy collection build` on the checkout; return the tarball it wrote."""
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([tool("ansible-galaxy"), "collection", "build", "--force", "--output-path", str(out_dir), str(REPO)],
                          capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise AssertionError("ansible-galaxy collection build failed:\n%s%s" % (proc.stdout, proc.stderr))
    meta = galaxy_meta()
    tarball = out_dir / ("%s-%s-%s.tar.gz" % (meta["namespace"], meta["name"], meta["version"]))
    if not tarball.is_file():
        raise AssertionError("ansible-galaxy did not write %s:\n%s" % (tarball, proc.stdout))
    return tarball


def tarball_files(tarball: Path) -> List[str]:
    """The regular files in the tarball, as paths relative to the collection root."""
    with tarfile.open(tarball) as tar:
        return sorted(member.name for member in tar.getmembers() if member.isfile())
