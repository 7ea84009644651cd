"""vm_info scale: 1000 domains on libvirt's test driver, against a 100-domain baseline of the same run.

The figure is the module's own time (RV elapsed_ms: listing, one XML parse per domain, storage
mapping through datastores, the JMESPath query), not Python/Ansible start-up. The assertion is
on the ratio (linear would be 10x) and on a generous absolute bound; the numbers are printed.
"""

from __future__ import annotations

import guestlab
import pytest

REPEAT = 3


def _measure(module_runner, tmp_path, n, query=None):
    ds = str(tmp_path / f"ds{n}")
    uri = guestlab.write_test_node(str(tmp_path / f"node{n}.xml"), guestlab.make_test_domains(n, ds))
    args = {"uri": uri, "datastores": [{"path": ds, "controller": "c1", "svm": "svm1", "volume": "vol1"}]}
    if query:
        args["query"] = query
    best = own = None
    result = None
    for _run in range(REPEAT):
        result = module_runner("vm_info", args, timeout=300)
        assert result.rc == 0, result.get("msg")
        ms = result["elapsed_ms"]
        best = ms if best is None else min(best, ms)
        mine = ms - result["timings"]["connect_ms"]   # without the test driver parsing its node file
        own = mine if own is None else min(own, mine)
    result["own_ms"] = own
    return best, result


@pytest.mark.slow
def test_vm_info_1000_domains_scale(module_runner, tmp_path, capsys):
    base_ms, base = _measure(module_runner, tmp_path, 100)
    big_ms, big = _measure(module_runner, tmp_path, 1000)
    q_ms, q = _measure(module_runner, tmp_path, 1000, query="[?state=='running' && agent.present]")
    assert len(base["vms"]) == 100 and len(big["vms"]) == 1000
    assert len(q["vms"]) == len([i for i in range(1000) if i % 3 == 0 and i % 5 == 0])
    assert big["volumes"][0]["vms"].__len__() == 1000
    ratio = big_ms / base_ms
    own_ratio = big["own_ms"] / max(base["own_ms"], 1.0)
    with capsys.disabled():
        print(f"\n[bench vm_info] module time: 100 domains {base_ms:.0f} ms, 1000 domains {big_ms:.0f} ms "
              f"(ratio {ratio:.1f}x, linear = 10x), 1000 + query {q_ms:.0f} ms; "
              f"without the driver's open {big['own_ms']:.0f} ms (ratio {own_ratio:.1f}x); "
              f"per domain {big_ms / 1000:.2f} ms; parts at 1000: {big['timings']}")
    # linear is 10x, quadratic would be 100x; the bounds leave room for a shared, noisy CPU
    assert ratio < 30, f"1000 domains took {ratio:.1f}x the 100-domain time (expected about linear)"
    assert own_ratio < 30, f"vm_info's own work grew {own_ratio:.1f}x for 10x the domains"
    assert big_ms < 5000, f"1000 domains took {big_ms:.0f} ms of module time"
