"""A data plane whose store is on an SPDK namespace, in a process of its own.

SPDK's shared libraries can only be loaded by the dynamic linker with
LD_LIBRARY_PATH set at process start (spdk_bindings/datapath.py says why), and
SPDK's environment starts once per process, so the spdk tests run the data
plane here, as a child:

    python -m tests.integration.helpers.spdk_dataplane serve  --trid T --index DIR ...
        prints `READY <port>`, serves on 127.0.0.1 until SIGTERM, exits 0
    python -m tests.integration.helpers.spdk_dataplane verify --trid T --index DIR ...
        prints `VERIFY <checked> <failed>` (no listener), exits 0
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from dataplane.fastpath import Dataplane, DataplaneSettings, StoreSettings
from spdk_bindings.datapath import SpdkDataPath

MIB = 1024 * 1024


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


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=("serve", "verify"))
    p.add_argument("--trid", required=True)
    p.add_argument("--nsid", type=int, default=1)
    p.add_argument("--index", required=True)
    p.add_argument("--device-bytes", type=int, required=True)
    p.add_argument("--segment-bytes", type=int, default=4 * MIB)
    p.add_argument("--hot-bytes", type=int, default=8 * MIB)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()

    spdk = SpdkDataPath.load()
    spdk.start_env(mem_mb=256, no_huge=True)
    dev = spdk.open_namespace(args.trid, args.nsid)
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
