# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""galaxy-importer on the collection tarball, with Automation Hub's settings (tests/publish/galaxy-importer.cfg).

Usage: publish_check.py TARBALL WORKDIR (run with the tools venv's python, its bin first on PATH).

The tarball is the one `ansible-galaxy collection build` made, imported as built (the importer's own
REQUIRE_V1_OR_GREATER refuses a version below 1.0.0, as Automation Hub does). Any ERROR line of the importer,
and any WARNING line not listed in ACCEPTED_WARNINGS (each justified in docs/dev/publishing.md), fails the check.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "galaxy-importer.cfg"

# Warnings Automation Hub shows but does not refuse, each justified in docs/dev/publishing.md#accepted-warnings.
ACCEPTED_WARNINGS: list[re.Pattern[str]] = [
    # flake8 run on a filter's documentation sidecar (plugins/filter/<name>.yml) as if it were Python
    re.compile(r"^WARNING: plugins/(filter|test)/[a-z0-9_]+\.ya?ml:\d+:\d+: E999 SyntaxError: "),
]


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
    lines = run_importer(tarball, workdir)
    found = problems(lines)
    print(f"publish-check: galaxy-importer on {tarball.name}: {len(lines)} lines, {len(found)} problems "
          f"(full log: {workdir / 'galaxy-importer.log'})")
    for line in found:
        print(f"  {line}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
