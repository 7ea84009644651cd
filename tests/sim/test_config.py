"""The config schema: the README example is valid, bad configs are refused with a clear message."""

from __future__ import annotations

import re
import sys

import pytest
import yaml
from helpers.sim_fixtures import REPO
from simapi import Client

sys.path.insert(0, str(REPO / "tests" / "lab"))
from ontapsim import config


def _readme_example() -> dict:
    text = (REPO / "tests" / "lab" / "README.md").read_text()
    return yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))


def test_readme_example_config_starts(fast_sim):
    c = Client(fast_sim(_readme_example()))
    assert c.get("/api/cluster")["version"]["major"] == 8
    rels = c.get("/api/snapmirror/relationships", fields="source")["records"]
    # two on this cluster, one whose source is on the peer cluster of the example (not running: unavailable)
    assert sorted(r["source"].get("cluster", {}).get("name", "-") for r in rels) == ["-", "-", "site-a"]
    assert c.get("/api/cluster/peers", fields="status")["records"][0]["status"]["state"] == "unavailable"
    assert Client(c.sim, user="viewer", password="secret").get("/api/svm/svms")["num_records"] == 2


def test_sizes_and_versions():
    assert config.parse_size("10G") == 10 * 1024 ** 3
    assert config.parse_size("1.5k") == 1536
    assert config.parse_size(4096) == 4096
    assert config.parse_version("9.8") == (9, 8, 0)
    assert config.parse_version("9.13.1") == (9, 13, 1)
    with pytest.raises(config.ConfigError):
        config.parse_version("8.3")
    with pytest.raises(config.ConfigError):
        config.parse_size("lots")


@pytest.mark.parametrize("bad, message", [
    ({"volumes": [{"name": "v", "svm": "nosuch"}]}, "unknown svm"),
    ({"luns": [{"path": "/vol/vol_ds1/a/b", "svm": "svm1"}]}, "path must be /vol/<volume>/<name>"),
    ({"luns": [{"path": "/vol/vol_ds1/l", "svm": "svm1", "serial_number": "short"}]}, "12 characters"),
    ({"users": [{"name": "u", "password": "p", "role": "superuser"}]}, "unknown role"),
    ({"roles": {"r": ["fly"]}}, "unknown actions"),
    ({"relationships": [{"source": "svm1:vol_ds1", "destination": "svm1:d", "policy": "nope"}]}, "unknown policy"),
    ({"relationships": [{"source": "vol_ds1", "destination": "svm1:d"}]}, "svm:volume"),
    ({"policies": [{"name": "p", "type": "sync"}]}, "type must be"),
])
def test_bad_configs_are_refused(tmp_path, bad, message):
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(config.ConfigError, match=re.escape(message)):
        config.load(path)


def test_custom_role(fast_sim):
    cfg = {"users": [{"name": "admin", "password": "netapp123", "role": "admin"},
                     {"name": "snap", "password": "s", "role": "snaponly"}],
           "roles": {"snaponly": ["read", "snapshot_create"]}}
    sim = fast_sim(cfg)
    c = Client(sim, user="snap", password="s")
    vol = c.volume("vol_ds1")
    assert c.create_snapshot(vol["uuid"], "s1").status == 201
    snap = c.snapshots(vol["uuid"])[0]
    assert c.delete(f"/api/storage/volumes/{vol['uuid']}/snapshots/{snap['uuid']}").status == 403
