# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""galaxy-importer on the collection tarball, with Automation Hub's settings (tests/publish/galaxy-importer.cfg).

Usage: publish_check.py TARBALL WORKDIR (run with the tools venv's python, its bin first on PATH).

The tarball is the one `ansible-galaxy collection build` made. Automation Hub refuses a version below 1.0.0;
while galaxy.yml still says 0.x, the check imports a copy of that same tarball whose MANIFEST.json says 1.0.0
(nothing else changes: FILES.json and every file are the built ones) and says so. Any ERROR line of the importer,
and any WARNING line not listed in ACCEPTED_WARNINGS (each justified in docs/dev/publishing.md), fails the check.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "galaxy-importer.cfg"
FIRST_PUBLIC = (1, 0, 0)

# Warnings Automation Hub shows but does not refuse, each justified in docs/dev/publishing.md#accepted-warnings.
ACCEPTED_WARNINGS: list[re.Pattern[str]] = [
    # flake8 run on a filter's documentation sidecar (plugins/filter/<name>.yml) as if it were Python
    re.compile(r"^WARNING: plugins/(filter|test)/[a-z0-9_]+\.ya?ml:\d+:\d+: E999 SyntaxError: "),
]


def version_tuple(version: str) -> tuple[int, ...]:
    core = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    if not core:
        raise SystemExit(f"galaxy.yml version {version!r} is not semantic (X.Y.Z)")
    return tuple(int(part) for part in core.groups())


def with_version(tarball: Path, version: str, workdir: Path) -> Path:
    """A copy of `tarball` whose MANIFEST.json names `version`; every other member is copied unchanged."""
    with tarfile.open(tarball, "r:gz") as source:
        manifest = json.load(source.extractfile("MANIFEST.json"))  # type: ignore[arg-type]
        info = manifest["collection_info"]
        info["version"] = version
        target = workdir / f"{info['namespace']}-{info['name']}-{version}.tar.gz"
        with tarfile.open(target, "w:gz") as copy:
            for member in source.getmembers():
                if member.name == "MANIFEST.json":
                    data = json.dumps(manifest, indent=4, sort_keys=True).encode()
                    member.size = len(data)
                    copy.addfile(member, io.BytesIO(data))
                else:
                    copy.addfile(member, source.extractfile(member) if member.isfile() else None)
    return target


def run_importer(tarball: Path, workdir: Path) -> list[str]:
    # Ansible's and ansible-lint's temp files and caches under WORKDIR, not in the user's home
    env = dict(os.environ, GALAXY_IMPORTER_CONFIG=str(CONFIG), GALAXY_IMPORTER_ANSIBLE_LOCAL_TMP=str(workdir / "ansible-tmp"))
    env.pop("ANSIBLE_COLLECTIONS_PATH", None)  # the importer installs the tarball into its own temp path
    proc = subprocess.run(
        [sys.executable, "-m", "galaxy_importer.main", str(tarball)],
        cwd=workdir, env=env, capture_output=True, text=True, check=False,
    )
    (workdir / "galaxy-importer.log").write_text(proc.stdout + proc.stderr)
    lines = (proc.stdout + proc.stderr).splitlines()
    if proc.returncode != 0 and not any(line.startswith("ERROR") for line in lines):
        lines.append(f"ERROR: galaxy-importer exited {proc.returncode}")
    return lines


def problems(lines: list[str]) -> list[str]:
    found = []
    for line in lines:
        if line.startswith(("ERROR", "CRITICAL")) or line.startswith("Traceback"):
            found.append(line)
        elif line.startswith("WARNING") and not any(p.search(line) for p in ACCEPTED_WARNINGS):
            found.append(line)
    return found


def main(argv: list[str]) -> int:
    tarball, workdir = Path(argv[1]).resolve(), Path(argv[2]).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "r:gz") as source:
        version = json.load(source.extractfile("MANIFEST.json"))["collection_info"]["version"]  # type: ignore[arg-type]
    checked = tarball
    if version_tuple(version) < FIRST_PUBLIC:
        checked = with_version(tarball, "1.0.0", workdir)
        print(f"publish-check: galaxy.yml says {version}; Automation Hub needs >= 1.0.0, so the importer checks "
              f"{checked.name}, the built tarball with only MANIFEST.json's version changed")
    lines = run_importer(checked, workdir)
    found = problems(lines)
    print(f"publish-check: galaxy-importer on {checked.name}: {len(lines)} lines, {len(found)} problems "
          f"(full log: {workdir / 'galaxy-importer.log'})")
    for line in found:
        print(f"  {line}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
