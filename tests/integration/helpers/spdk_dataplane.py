"""A data plane whose store is on an SPDK device, in a process of its own.

SPDK's shared libraries can only be loaded by the dynamic linker with
LD_LIBRARY_PATH set at process start (spdk_bindings/datapath.py says why), and
SPDK's environment starts once per process, so the spdk tests run the data
plane here, as a child. The device is one of:

    --trid T [--nsid N]          a namespace of spdk_tgt's, over NVMe/TCP (external)
    --rpc-socket S --image F --pool-mib NAME=MIB... --pool NAME [--bdev B]
                                 SPDK in this process (embedded): its RPC server on S,
                                 the aio file F provisioned with every named pool (as
                                 the appliance does at each start), then pool NAME's
                                 lvol opened (or bdev B, which may not exist)

and the mode one of:

    serve      prints `DEVICE <bytes> <block>` and `READY <port>`, serves on
               127.0.0.1 until SIGTERM, exits 0
    verify     prints `DEVICE ...` and `VERIFY <checked> <failed>` (no listener), exits 0
    provision  embedded only: prints `POOL <name> <bdev> <bytes>` for each pool, exits 0
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from dataplane.fastpath import Dataplane, DataplaneSettings, StoreSettings
from spdk_bindings import provision, rpc
from spdk_bindings.datapath import SpdkDataPath
from spdk_bindings.embedded import EmbeddedSpdk

MIB = 1024 * 1024
# SPDK's memory in this process: the NVMe initiator needs little; an embedded bdev
# layer's buffer pools need about 200 MiB and refuse to start below 512 MiB.
EXTERNAL_MEM_MB = 256
EMBEDDED_MEM_MB = 1024


def _settings(args: argparse.Namespace, dev: object, listen: bool) -> DataplaneSettings:
    store = StoreSettings(
        index_dir=args.index, device_path="", device=dev, device_bytes=args.device_bytes,
        segment_bytes=args.segment_bytes, hot_bytes=args.hot_bytes, item_size_max=MIB,
        index_map_bytes=1024 * MIB, flush_interval_ms=200, device_offset=0,
        pool_name="items")
    return DataplaneSettings(
        listen_host="127.0.0.1", tcp_port=0 if listen else -1, udp_port=-1,
        workers=args.workers if listen else 1, max_connections=1024, idle_timeout_s=0,
        tcp_backlog=128, udp_reply_bytes_per_sec=1 << 22, udp_reply_burst_bytes=1 << 19,
        version="1.6.18 smartswitch-spdk-test", store=store)


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=("serve", "verify", "provision"))
    p.add_argument("--trid")
    p.add_argument("--nsid", type=int, default=1)
    p.add_argument("--rpc-socket")
    p.add_argument("--image")
    p.add_argument("--pool-mib", action="append", default=[], metavar="NAME=MIB")
    p.add_argument("--pool", default="items")
    p.add_argument("--bdev")
    p.add_argument("--index")
    p.add_argument("--device-bytes", type=int)
    p.add_argument("--segment-bytes", type=int, default=4 * MIB)
    p.add_argument("--hot-bytes", type=int, default=8 * MIB)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    if bool(args.trid) == bool(args.rpc_socket):
        p.error("give either --trid (external) or --rpc-socket (embedded)")
    if args.rpc_socket and not (args.image and args.pool_mib):
        p.error("embedded needs --image and --pool-mib")
    if args.mode == "provision" and not args.rpc_socket:
        p.error("provision is for embedded SPDK (spdk_tgt is provisioned by the test)")
    if args.mode != "provision" and not (args.index and args.device_bytes):
        p.error(f"{args.mode} needs --index and --device-bytes")
    return args


def _provision(args: argparse.Namespace) -> provision.SpdkDeviceState:
    """The aio file's lvol store and lvols through our own RPC server, as the appliance
    provisions at each start: an embedded SPDK starts with no bdevs, so every process
    creates the aio bdev again and examine finds what earlier ones made."""
    client = rpc.connect(args.rpc_socket, timeout=30.0)
    try:
        client.framework_wait_init()
        dev = provision.SpdkDevice(name="ss0", transport="aio", rpc_socket=args.rpc_socket,
                                   path=args.image, block_size=4096)
        pools = []
        for spec in args.pool_mib:
            name, mib = spec.split("=")
            pools.append(provision.SpdkPool(name, int(mib) * MIB))
        return provision.apply_plan(client, provision.plan_device(client, dev, pools))
    finally:
        client.close()


def _open_embedded(spdk: SpdkDataPath, args: argparse.Namespace) -> tuple[Any, EmbeddedSpdk]:
    spdk.start_env(mem_mb=EMBEDDED_MEM_MB, no_huge=True)
    embedded = EmbeddedSpdk.start(spdk, args.rpc_socket)
    try:
        state = _provision(args)
        if args.mode == "provision":
            for pool in state.pools.values():
                print(f"POOL {pool.name} {pool.bdev} {pool.size_bytes}", flush=True)
            return None, embedded
        return embedded.open_bdev(args.bdev or state.pools[args.pool].bdev), embedded
    except BaseException:
        embedded.stop()
        raise


def main() -> int:
    args = _parse()
    spdk = SpdkDataPath.load()
    if args.trid:
        spdk.start_env(mem_mb=EXTERNAL_MEM_MB, no_huge=True)
        return _run(args, spdk.open_namespace(args.trid, args.nsid))
    dev, embedded = _open_embedded(spdk, args)
    try:
        return 0 if dev is None else _run(args, dev)
    finally:
        embedded.stop()  # after _run: the data plane has closed the bdev


def _run(args: argparse.Namespace, dev: Any) -> int:
    """Serve or verify on dev, which the data plane owns from here on."""
    print(f"DEVICE {SpdkDataPath.device_size(dev)} {SpdkDataPath.device_block_size(dev)}",
          flush=True)
    if args.mode == "verify":
        dp = Dataplane.create(_settings(args, dev, listen=False))
        checked, failed = dp.verify_index()
        dp.destroy()
        print(f"VERIFY {checked} {failed}", flush=True)
        return 0

    dp = Dataplane.create(_settings(args, dev, listen=True))
    stop = threading.Event()
    errors: list[BaseException] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def guarded(fn, *a) -> None:  # type: ignore[no-untyped-def]
        try:
            fn(*a)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            stop.set()

    def housekeeper() -> None:
        while not stop.wait(0.1):
            dp.housekeep()

    threads = [threading.Thread(target=guarded, args=(dp.run_worker, i))
               for i in range(args.workers)]
    threads.append(threading.Thread(target=guarded, args=(housekeeper,)))
    for t in threads:
        t.start()
    print(f"READY {dp.bound_port(False)}", flush=True)
    while not stop.wait(0.2):
        pass
    dp.stop()
    for t in threads:
        t.join(timeout=30)
    if any(t.is_alive() for t in threads):
        print("a data plane thread did not return", file=sys.stderr, flush=True)
        return 1
    dp.destroy()
    if errors:
        print(f"data plane threads failed: {errors!r}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
