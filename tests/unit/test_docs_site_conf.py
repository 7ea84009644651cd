"""docs/site/conf.py's rewriting of the guides for the site (the site build itself runs in `make docs-site`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("docs_site_conf", REPO / "docs" / "site" / "conf.py")
assert _spec and _spec.loader
conf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(conf)


def test_a_link_out_of_docs_becomes_the_path_it_names():
    text = "Run [the playbook](../playbooks/backup.yml), see [../README.md](../README.md#quick-start)."
    assert conf.outside_links_to_paths(text, "") == "Run the playbook (`playbooks/backup.yml`), see `README.md`."
    assert conf.outside_links_to_paths("[lab](../../tests/lab/README.md)", "dev") == "lab (`tests/lab/README.md`)"
    assert conf.outside_links_to_paths("sources in [diagrams/](diagrams/)", "") == "sources in `docs/diagrams/`"


def test_links_inside_docs_anchors_urls_and_images_stay():
    text = ("[b](backup.md#inventory) [o](dev/overlay.md) [c](../backup.md) [a](#old-name) [w](https://example.com/x) "
            "![pic](diagrams/fence-timeline.svg)")
    assert conf.outside_links_to_paths(text, "") == text.replace("[c](../backup.md)", "c (`backup.md`)")
    assert conf.outside_links_to_paths("[c](../backup.md)", "dev") == "[c](../backup.md)"


def test_an_html_anchor_becomes_a_target_unless_its_heading_has_the_same_slug():
    source = '<a id="old-name"></a>\n### A renamed section\n\n<a id="ontap-privileges"></a>\n## ONTAP privileges\n'
    out = conf._HTML_ANCHOR.sub(conf._anchor, source)
    assert out.startswith("(old-name)=\n### A renamed section")
    assert "(ontap-privileges)=" not in out and "## ONTAP privileges" in out and "<a id" not in out
