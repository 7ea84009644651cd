"""The fault catalogue lives in the repository: docs/dev/faults.md.

- every fault/promise code cited under plugins/, roles/ and tests/ has an anchor there;
- a citation links its entry on the same line ("<code> (docs/dev/faults.md#<anchor>)"), except in the
  files listed in PENDING, whose citations are converted when the work on them is merged;
- every test the catalogue names exists (file and function);
- nothing in the repository points at a catalogue outside it.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAULTS = REPO / "docs" / "dev" / "faults.md"
CODE_RE = re.compile(r"(?<![A-Za-z0-9_#/.-])([FP])([1-9][0-9]?)(?![0-9A-Za-z_])")
ANCHOR_RE = re.compile(r'<a id="([a-z0-9-]+)"></a>')
TEST_REF_RE = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")
SKIP_DIRS = {".git", ".venv", "build", "__pycache__", ".pytest_cache", ".ruff_cache", "node_modules", "cache", "output"}
MAX_BYTES = 2 * 1024 * 1024  # guest images and other large artefacts are not text we cite from
TEXT_SUFFIXES = {".py", ".yml", ".yaml", ".md", ".txt", ".cfg", ".toml", ".ini", ".j2", ".json", ".sh", ""}
# Files whose bare citations are still to be linked (none: every citation links its entry).
PENDING: set = set()


def _files(*tops: str):
    for top in tops:
        for root, dirs, names in os.walk(REPO / top):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
            for name in sorted(names):
                path = Path(root) / name
                if (path.suffix in TEXT_SUFFIXES or name == "Makefile") and path.is_file() \
                        and path.stat().st_size <= MAX_BYTES:
                    yield path


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return ""


def _citations():
    """(relative path, line number, code, line) for every code cited in plugins/, roles/, tests/."""
    for path in _files("plugins", "roles", "tests"):
        for number, line in enumerate(_text(path).splitlines(), start=1):
            for match in CODE_RE.finditer(line):
                yield str(path.relative_to(REPO)), number, match.group(1) + match.group(2), line


def _anchors() -> set:
    return set(ANCHOR_RE.findall(FAULTS.read_text(encoding="utf-8")))


def test_every_fault_and_promise_has_an_entry():
    anchors = _anchors()
    expected = {"f%d" % n for n in range(1, 24)} | {"p%d" % n for n in range(1, 9)}
    assert expected <= anchors, sorted(expected - anchors)
    for new in ("late-snapshot", "consistency-derived", "release-own", "verify-before-ok", "restore-trust",
                "secrets"):
        assert new in anchors


def test_every_cited_code_has_an_anchor():
    anchors = _anchors()
    missing = ["%s:%d cites %s" % (path, number, code) for path, number, code, _line in _citations()
               if code.lower() not in anchors]
    assert missing == [], "codes without an entry in docs/dev/faults.md:\n" + "\n".join(missing)


def test_citations_link_their_entry():
    bare = ["%s:%d: %s" % (path, number, line.strip()) for path, number, code, line in _citations()
            if path not in PENDING and "docs/dev/faults.md#%s" % code.lower() not in line]
    assert bare == [], "cite as '<code> (docs/dev/faults.md#<code in lower case>)':\n" + "\n".join(bare)


def test_the_tests_named_in_the_catalogue_exist():
    refs = TEST_REF_RE.findall(FAULTS.read_text(encoding="utf-8"))
    assert len(refs) > 40
    missing = []
    for rel, func in refs:
        path = REPO / rel
        if not path.is_file():
            missing.append("%s (no such file)" % rel)
            continue
        names = {node.name for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
        if func not in names:
            missing.append("%s::%s" % (rel, func))
    assert missing == [], missing


@pytest.mark.parametrize("needle", ["../" + "shared", "shared" + "/reference"])
def test_nothing_points_outside_the_repository(needle):
    hits = []
    for path in _files("."):
        for number, line in enumerate(_text(path).splitlines(), start=1):
            if needle in line:
                hits.append("%s:%d" % (path.relative_to(REPO), number))
    assert hits == [], hits
