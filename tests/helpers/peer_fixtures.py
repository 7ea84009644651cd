"""Two peered simulated clusters: a primary site (svm1 with vol_ds1/vol_ds2) and a DR site (svm_dr) that
holds the SnapVault relationship svm1:vol_ds1 -> svm_dr:vol_ds1_vault (and a mirror of vol_ds2). Each cluster
is its own simulator process; each names the other's data directory in `peers` (tests/lab/README.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PRIMARY = "site-a"
DR = "site-b"
USERS = [{"name": "admin", "password": "netapp123", "role": "admin"},
         {"name": "backup", "password": "b", "role": "backup"}]


def peered_configs(primary_data: Path, dr_data: Path, primary_volumes: list[dict[str, Any]] | None = None,
                   vault_policy: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cluster YAMLs (as dicts) of the primary and the DR cluster, each pointing at the other's data."""
    vols = primary_volumes or [{"name": "vol_ds1", "svm": "svm1", "junction_path": "/vol_ds1", "size": "1G"},
                               {"name": "vol_ds2", "svm": "svm1", "junction_path": "/vol_ds2", "size": "1G"}]
    policy = vault_policy or {"name": "vault_daily", "type": "vault", "rules": [{"label": "daily", "count": 3}]}
    primary = {
        "cluster": {"name": PRIMARY, "version": "9.13.1"}, "users": USERS,
        "svms": [{"name": "svm1", "lifs": [{"name": "svm1_data1", "address": "127.0.0.1"}]}],
        "volumes": vols,
        "peers": [{"cluster": DR, "data": str(dr_data), "svms": [{"local": "svm1", "peer": "svm_dr"}]}],
    }
    dr = {
        "cluster": {"name": DR, "version": "9.13.1"}, "users": USERS,
        "svms": [{"name": "svm_dr", "lifs": [{"name": "svm_dr_data1", "address": "127.0.0.2"}]},
                 {"name": "svm_other"}],
        "volumes": [{"name": "vol_other", "svm": "svm_other", "size": "1G"}],
        "policies": [policy],
        "relationships": [{"source": "svm1:vol_ds1", "source_cluster": PRIMARY,
                           "destination": "svm_dr:vol_ds1_vault", "policy": policy["name"]}],
        "peers": [{"cluster": PRIMARY, "data": str(primary_data), "svms": [{"local": "svm_dr", "peer": "svm1"}]}],
    }
    return primary, dr
