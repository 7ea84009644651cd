# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Sphinx configuration of the kvmsnap.core documentation site (`make docs`, docs/dev/publishing.md).

The source tree is assembled under build/docs-site/rst by the Makefile: this site's index, the plugin and role
pages antsibull-docs renders from the collection, and the user guides of docs/*.md (read by myst-parser).
Offline by design: no intersphinx inventories are fetched, so the build needs no network and `-W` sees only
this collection's own problems.
"""

from __future__ import annotations

import posixpath
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sphinx.application import Sphinx

project = "kvmsnap.core"
copyright = "kvmsnap.core contributors"
title = "kvmsnap.core documentation"
html_short_title = "kvmsnap.core"
html_title = "kvmsnap.core documentation"

extensions = ["sphinx_antsibull_ext", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}

# The guides use GitHub's heading anchors (backup.md#when-is-a-snapshot-a-backup) and a few <a id=...> tags.
myst_heading_anchors = 4
myst_enable_extensions = ["html_image"]

pygments_style = "ansible"
highlight_language = "YAML+Jinja"

html_theme = "sphinx_ansible_theme"
html_show_sphinx = False
html_use_smartypants = True
html_use_modindex = False
html_use_index = False
html_copy_source = False
html_theme_options = {"display_version": False}

# No intersphinx: references to ansible-core's docs stay plain text instead of fetching inventories.
default_role = "any"
nitpicky = True


# The guides mark some anchors as raw HTML (<a id="p8"></a>) for GitHub; MyST does not see those. An anchor
# that repeats the slug of the heading under it is dropped (MyST's heading anchor serves the same links);
# any other becomes a MyST target, which the guides' links (#p8, faults.md#p8) then reach.
_HTML_ANCHOR = re.compile(r'^<a id="([A-Za-z0-9_-]+)"></a>\n+(#+ (.*))?', re.M)


def _slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchor(match: re.Match[str]) -> str:
    anchor, heading_line, heading = match.group(1), match.group(2), match.group(3)
    if heading is not None and _slug(heading) == anchor:
        return heading_line
    return f"({anchor})=\n" + (heading_line or "")


# A guide's link to a file of the collection outside docs/ (../playbooks/backup.yml, ../README.md) or to a
# directory has no page in the site: it becomes its text and the file's path in the collection, e.g. "the playbook (`playbooks/backup.yml`)".
_LINK = re.compile(r"(?<!!)\[([^\]]*)\]\(([^)\s]+)\)")


def outside_links_to_paths(text: str, doc_dir: str) -> str:
    """TEXT of a guide that lies in docs/DOC_DIR, with each link that leaves docs/ replaced by the path it names."""

    def replace(match: re.Match[str]) -> str:
        label, target = match.group(1), match.group(2)
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            return match.group(0)
        file = target.split("#")[0]
        path = posixpath.normpath(posixpath.join("docs", doc_dir, file))
        if (path == "docs" or path.startswith("docs/")) and not file.endswith("/"):
            return match.group(0)
        if file.endswith("/"):  # a directory: no page in the site either
            path += "/"
        return f"`{path}`" if label.strip("`") in (file, path) else f"{label} (`{path}`)"

    return _LINK.sub(replace, text)


def _for_the_site(app: Sphinx, docname: str, source: list[str]) -> None:
    if app.env.doc2path(docname).suffix != ".md" or not docname.startswith("guides/"):
        return
    doc_dir = posixpath.dirname(docname[len("guides/"):])
    source[0] = outside_links_to_paths(_HTML_ANCHOR.sub(_anchor, source[0]), doc_dir)


def setup(app: Sphinx) -> dict[str, bool]:
    app.connect("source-read", _for_the_site)
    return {"parallel_read_safe": True}
