"""Switch mode serving from SPDK: one process, one EAL.

The appliance starts DPDK's EAL for switch mode (net_af_packet on a veth in a namespace,
`--no-huge --legacy-mem`), then SPDK attaches to that EAL (spdk_env_dpdk_post_init)
and runs its bdev layer inside the appliance (storage.spdk.mode: embedded) on an
aio bdev over a file. Device-resident keys are answered on the fast path: a UDP get is
parked on the lcore while the read goes through the lcore's own SPDK I/O channel on
the pool's lvol, then answered from the service address.

Runs whenever SPDK_DIR points at an SPDK build (build/lib/libspdk_*.so) built on the
same DPDK as the data plane (spdk_bindings/README.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from .helpers.netns import VIP
from .test_switch import Rig, _value, device_hits_parked, rig  # noqa: F401  (rig: a fixture)

pytestmark = [pytest.mark.netns, pytest.mark.dpdk, pytest.mark.spdk]

SPDK_DIR = os.environ.get("SPDK_DIR")
if not SPDK_DIR:
    pytest.skip("SPDK_DIR is not set (point it at an SPDK tree with build/lib/libspdk_*.so "
                "to run the SPDK tests)", allow_module_level=True)

MIB = 1024 * 1024


def _image(tmp_path: Path, mib: int = 96) -> Path:
    image = tmp_path / "nvme0.img"
    with open(image, "wb") as f:
        f.truncate(mib * MIB)
    return image


def test_device_hits_come_from_the_lvol_through_the_lcore(rig: Callable[..., Rig],
                                                         tmp_path: Path) -> None:
    """No DRAM tier: every get of a rolled-out key reads the lvol. Each is parked
    on the lcore and answered with its value from the service address."""
    r = rig("l3", storage={"hot_tier": "0", "segment_size": "2MiB",
                           "spdk_image": _image(tmp_path)})
    assert "attached to switch mode's EAL" in r.app.log(), r.app.log()
    assert "store=spdk:local/items" in r.app.log(), r.app.log()
    values = device_hits_parked(r)
    # The same keys over TCP (the exception path, the socket workers' own channels).
    for key in list(values)[:5]:
        reply = r.tcp(VIP, b"get %s\r\n" % key, until=b"END\r\n")
        assert _value(reply) == values[key], key
