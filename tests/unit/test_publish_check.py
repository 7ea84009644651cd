"""tests/publish/publish_check.py: what counts as a problem in galaxy-importer's output.

(`make publish-check` runs the real galaxy-importer on the real tarball; these check the script's own logic.)
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("publish_check", REPO / "tests" / "publish" / "publish_check.py")
assert _spec and _spec.loader
publish_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(publish_check)


def test_errors_and_unexplained_warnings_are_problems():
    lines = [
        "Importing with galaxy-importer 0.4.44",
        "WARNING: plugins/filter/catalog.yml:9:6: E999 SyntaxError: unterminated string literal (detected at line 9)",
        "WARNING: plugins/modules/vm_info.py:12:1: W503 line break before binary operator",
        "ERROR: The import failed for the following reason: No role readme found.",
        "Importer processing completed successfully",
    ]
    assert publish_check.problems(lines) == lines[2:4]
    # the accepted warning is about YAML sidecars only: the same message on a Python file is a problem
    python = "WARNING: plugins/filter/roles.py:9:6: E999 SyntaxError: unterminated string literal (detected at line 9)"
    assert publish_check.problems([python]) == [python]
