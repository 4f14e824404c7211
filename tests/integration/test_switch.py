"""Switch mode end to end: DPDK's net_af_packet on a veth in a namespace, a
client and real memcached back ends (UDP on) on the same bridge.

The appliance runs `--no-huge --no-pci`; its exception path is a net_tap
carrying the service address. Each test builds and removes its namespaces.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .helpers.netns import CLIENT, VIP, Lab, can_run, tcp_command, udp_request
from .test_direct_io import device_dir  # noqa: F401  (a fixture: a directory taking O_DIRECT)
from .helpers.procs import Server, start_appliance, tail

pytestmark = [pytest.mark.netns, pytest.mark.dpdk]

MC = 11211
OBJECTS_PORT = 8081


def _switch_built() -> str:
    try:
        from dataplane import switch
        return "" if switch.available() else "the data plane was built without DPDK"
    except Exception as exc:  # noqa: BLE001 - report why, whatever it is
        return f"the data plane is not built: {exc}"


def _require() -> None:
    why = can_run() or _switch_built()
    if why:
        pytest.fail(f"switch-mode tests {why}; CI runs them as root after `make deps`")


def switch_config(tmp: Path, lab: Lab, rewrite: str, storage: dict[str, Any] | None = None,
                  **dpdk: Any) -> Path:
    var = tmp / "var"
    storage = storage or {}
    device: dict[str, Any] = {"name": "local", "kind": "file",
                              "path": str(storage.get("device", var / "store.dat")),
                              "size": "64MiB"}
    if storage.get("direct_io"):
        device["direct_io"] = True
    if "spdk_image" in storage:
        # An aio bdev in the appliance's embedded SPDK, on switch mode's EAL.
        device = {"name": "local", "kind": "spdk", "transport": "aio",
                  "path": str(storage["spdk_image"]), "block_size": 4096,
                  "rpc_socket": str(tmp / "spdk.sock")}
    cfg: dict[str, Any] = {
        "memcached": {"listen": VIP, "tcp_port": MC, "udp_port": MC, "workers": 1},
        "storage": {
            "dir": str(var), "hot_tier": storage.get("hot_tier", "8MiB"),
            "devices": [device],
            "pools": [{"name": "items", "device": "local",
                       "size": "50%" if storage.get("objects") else "100%",
                       "segment_size": storage.get("segment_size", "4MiB")}]
                     + ([{"name": "objects", "device": "local", "size": "45%",
                          "role": "objects", "segment_size": "4MiB"}]
                        if storage.get("objects") else []),
            **({"spdk": {"mode": "embedded"}} if "spdk_image" in storage else {}),
        },
        # Object requests on the service address: a kernel listener, reached through
        # the exception path like TCP memcached.
        **({"objects": {"listen": f"{VIP}:{OBJECTS_PORT}", "buckets": [{"name": "default"}]}}
           if storage.get("objects") else {}),
        "backends": [{"name": f"b{i}", "host": a, "port": MC}
                     for i, a in enumerate(lab.backends)],
        "dataplane": {"mode": "dpdk", "dpdk": {
            "lcores": 1, "memory": "256MiB", "no_huge": True,
            "vdevs": ["net_af_packet0,iface=eth0,qpairs=1"], "port": "net_af_packet0",
            "service": {"address": f"{VIP}/24"}, "rewrite": rewrite,
            "exception": {"tap": "ssw0"}, **dpdk}},
    }
    path = tmp / "appliance.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class Rig:
    def __init__(self, lab: Lab, app: Server, tmp: Path) -> None:
        self.lab = lab
        self.app = app
        self.tmp = tmp
        self.udp = lab.socket("cl", socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((CLIENT, 0))
        self.reqid = 0

    def get(self, line: bytes, timeout: float = 3.0) -> tuple[bytes, tuple[str, int]]:
        self.reqid += 1
        return udp_request(self.udp, (VIP, MC), line, self.reqid, timeout)

    def tcp(self, addr: str, line: bytes, until: bytes = b"\r\n") -> bytes:
        s = self.lab.socket("cl", socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect((addr, MC))
            return tcp_command(s, line, until)
        finally:
            s.close()

    def counters(self, wait: float = 1.2) -> dict[str, int]:
        time.sleep(wait)  # published every 0.5 s
        return json.loads((self.tmp / "var" / "switch-counters.json").read_text())

    def app_route(self, key: bytes) -> str:
        """The back end the ring picks (the same C hash and lookup as the fast path)."""
        from appliance.proxy import ring, routing
        from appliance.config import load_config
        config = load_config(self.app.config_path, base_dir=self.tmp)
        index = ring.owner(routing.build_ring(config, config.backends), key, config.routing.hash)
        return config.backends[index].host


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    _require()
    labs: list[Lab] = []
    apps: list[Server] = []
    rigs: list[Rig] = []

    def make(rewrite: str = "l3", dsr: bool = False, storage: dict[str, Any] | None = None,
             **dpdk: Any) -> Rig:
        lab = Lab(tmp_path, dsr=dsr)
        labs.append(lab)
        if dsr:
            # Back ends that hold the service address ignore ARP sent from it
            # (Linux drops ARP whose sender address is its own), so in l2
            # mode their MACs are configured, as LVS-DR directors do.
            dpdk.setdefault("backend_macs", {a: lab.mac(f"b{i}")
                                             for i, a in enumerate(lab.backends)})
        cfg = switch_config(tmp_path, lab, rewrite, storage, **dpdk)
        app = start_appliance(cfg, tmp_path / "appliance.log", timeout=60,
                              prefix=lab.prefix("ap"))
        apps.append(app)
        r = Rig(lab, app, tmp_path)
        rigs.append(r)
        # ARP for the service address goes through the exception path.
        lab.wait_tcp(VIP, MC)
        # Misses go to the kernel until the owners' MACs are learned.
        deadline = time.monotonic() + 20
        while not all(f"back end {a} is at" in app.log() for a in lab.backends):
            assert time.monotonic() < deadline, app.log()
            time.sleep(0.1)
        return r

    try:
        yield make
    finally:
        for r in rigs:
            r.udp.close()
        for app in apps:
            code = app.terminate()
            if code != 0:
                print(tail(app.log_path))
        for lab in labs:
            lab.close()


def _value(reply: bytes) -> bytes:
    head, _, rest = reply.partition(b"\r\n")
    assert head.startswith(b"VALUE "), reply[:200]
    n = int(head.split()[3])
    assert rest[n:] == b"\r\nEND\r\n", reply[-50:]
    return rest[:n]


def test_miss_is_rewritten_to_the_owner_l3(rig: Callable[..., Rig]) -> None:
    r = rig("l3")
    key = b"sw:l3:key"
    owner = r.app_route(key)
    assert r.tcp(owner, b"set %s 7 0 5\r\nhello\r\n" % key) == b"STORED\r\n"
    reply, src = r.get(b"get %s\r\n" % key)
    assert reply == b"VALUE %s 7 5\r\nhello\r\nEND\r\n" % key
    # In l3 mode the owner answers from its own address, not through us.
    assert src[0] == owner
    c = r.counters()
    assert c["mc_forwarded_gets"] >= 1
    assert c["mc_hits"] == 0


def test_miss_is_rewritten_l2_reply_from_service_address(rig: Callable[..., Rig]) -> None:
    r = rig("l2", dsr=True)
    key = b"sw:l2:key"
    owner = r.app_route(key)
    assert r.tcp(owner, b"set %s 0 0 6\r\nfromb0\r\n" % key) == b"STORED\r\n"
    reply, src = r.get(b"get %s\r\n" % key)
    assert reply == b"VALUE %s 0 6\r\nfromb0\r\nEND\r\n" % key
    assert src[0] == VIP  # direct server return: the owner answers as the service
    c = r.counters()
    assert c["mc_forwarded_gets"] >= 1 and c["mc_hits"] == 0


def test_hit_is_answered_by_the_appliance_and_spans_datagrams(rig: Callable[..., Rig]) -> None:
    r = rig("l3")
    small, big = b"sw:hit:small", b"sw:hit:big"
    value = bytes(range(256)) * 40  # 10240 bytes: 8 datagrams
    # A set through the appliance (TCP via the exception path) keeps a local copy.
    assert r.tcp(VIP, b"set %s 3 0 2\r\nhi\r\n" % small) == b"STORED\r\n"
    assert r.tcp(VIP, b"set %s 0 0 %d\r\n%s\r\n" % (big, len(value), value)) == b"STORED\r\n"
    reply, src = r.get(b"get %s\r\n" % small)
    assert reply == b"VALUE %s 3 2\r\nhi\r\nEND\r\n" % small
    assert src == (VIP, MC)
    reply, src = r.get(b"get %s\r\n" % big)
    assert _value(reply) == value
    assert src == (VIP, MC)
    # gets needs the owner's cas, which a set passing through does not give.
    reply, src = r.get(b"gets %s\r\n" % small)
    assert reply.startswith(b"VALUE %s 3 2 " % small) and src[0] == r.app_route(small)
    c = r.counters()
    assert c["mc_hits"] >= 2
    assert c["mc_reply_datagrams"] >= 1 + 8


def test_reply_cache_serves_hits_and_never_a_stale_value(rig: Callable[..., Rig]) -> None:
    """Gets of small items are answered from the lcore's reply cache; a write,
    a delete or an expiry through any path makes the cached reply unusable."""
    r = rig("l3")
    key, short = b"sw:rc:key", b"sw:rc:short"
    owner = r.app_route(key)
    assert r.tcp(VIP, b"set %s 1 0 3\r\none\r\n" % key) == b"STORED\r\n"
    # The replies as they cross the wire: both checksums verified here, not
    # left to the client's kernel.
    raw = r.lab.socket("cl", socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    try:
        raw.bind(("eth0", 0))
        for _ in range(3):
            assert r.get(b"get %s\r\n" % key) == (b"VALUE %s 1 3\r\none\r\nEND\r\n" % key,
                                                 (VIP, MC))
        assert _checked_replies(raw) >= 3
    finally:
        raw.close()
    c = r.counters()
    assert c["mc_reply_cache_fills"] >= 1 and c["mc_reply_cache_hits"] >= 2, c
    # A new value through the socket path (TCP, the exception path).
    assert r.tcp(VIP, b"set %s 2 0 3\r\ntwo\r\n" % key) == b"STORED\r\n"
    assert r.get(b"get %s\r\n" % key) == (b"VALUE %s 2 3\r\ntwo\r\nEND\r\n" % key, (VIP, MC))
    assert r.counters(wait=0.6)["mc_reply_cache_stale"] >= 1
    # A delete through the socket path: the owner answers, with nothing.
    assert r.tcp(VIP, b"delete %s\r\n" % key) == b"DELETED\r\n"
    reply, src = r.get(b"get %s\r\n" % key)
    assert reply == b"END\r\n" and src[0] == owner
    # An item that expires is not served from the cache afterwards.
    assert r.tcp(VIP, b"set %s 0 2 4\r\nsoon\r\n" % short) == b"STORED\r\n"
    for _ in range(2):
        assert r.get(b"get %s\r\n" % short)[0] == b"VALUE %s 0 4\r\nsoon\r\nEND\r\n" % short
    time.sleep(3.2)
    assert r.get(b"get %s\r\n" % short)[0] == b"END\r\n"


def _checked_replies(raw: socket.socket) -> int:
    """Read what a packet socket caught; assert the IPv4 and UDP checksums of
    every memcached reply from the service address. Returns how many."""
    raw.setblocking(False)
    n = 0
    while True:
        try:
            frame = raw.recv(65536)
        except BlockingIOError:
            return n
        ip = frame[14:34]
        if ip[9] != 17 or ip[12:16] != socket.inet_aton(VIP):
            continue
        udp = frame[34:34 + struct.unpack("!H", frame[38:40])[0]]
        if struct.unpack("!H", udp[:2])[0] != MC:
            continue
        assert _csum(ip) == 0, f"bad IPv4 header checksum: {frame[:64].hex()}"
        pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, len(udp))
        assert struct.unpack("!H", udp[6:8])[0] != 0 and _csum(pseudo + udp) == 0, \
            f"bad UDP checksum: {frame[:64].hex()}"
        n += 1


def test_udp_delete_is_forwarded_and_invalidates(rig: Callable[..., Rig]) -> None:
    r = rig("l3")
    key = b"sw:del:key"
    owner = r.app_route(key)
    assert r.tcp(VIP, b"set %s 0 0 1\r\nx\r\n" % key) == b"STORED\r\n"
    reply, src = r.get(b"get %s\r\n" % key)
    assert src[0] == VIP and b"VALUE" in reply
    reply, src = r.get(b"delete %s\r\n" % key)
    assert reply == b"DELETED\r\n" and src[0] == owner
    reply, src = r.get(b"get %s\r\n" % key)
    assert reply == b"END\r\n" and src[0] == owner  # no local copy left
    assert r.counters()["mc_invalidated"] >= 1


def test_exception_path_tcp_ping_arp(rig: Callable[..., Rig]) -> None:
    r = rig("l3")
    assert r.tcp(VIP, b"version\r\n").startswith(b"VERSION ")
    ping = r.lab.exec("cl", "ping", "-c", "2", "-W", "2", VIP, check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    neigh = r.lab.exec("cl", "ip", "neigh", "show", VIP).stdout
    assert r.lab.mac("ap") in neigh.lower(), neigh
    c = r.counters()
    assert c["to_kernel"] > 0 and c["from_kernel"] > 0


# ---- bad packets: crafted frames from a packet socket in the client namespace ----

def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _frame(dst_mac: str, src_mac: str, payload: bytes, *, sport: int = 40000,
           dport: int = MC, frag: int = 0, ip_len_delta: int = 0, bad_ip_sum: bool = False,
           bad_udp_sum: bool = False) -> bytes:
    src, dst = socket.inet_aton(CLIENT), socket.inet_aton(VIP)
    udp_len = 8 + len(payload)
    pseudo = src + dst + struct.pack("!BBH", 0, 17, udp_len)
    udp = struct.pack("!HHHH", sport, dport, udp_len, 0) + payload
    usum = _csum(pseudo + udp) or 0xFFFF
    if bad_udp_sum:
        usum ^= 0x5A5A
    udp = udp[:6] + struct.pack("!H", usum) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len + ip_len_delta, 7, frag, 64, 17,
                     0, src, dst)
    isum = _csum(ip) ^ (0x1111 if bad_ip_sum else 0)
    ip = ip[:10] + struct.pack("!H", isum) + ip[12:]
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) + \
        b"\x08\x00"
    return eth + ip + udp


def test_bad_packets_are_counted_and_never_crash(rig: Callable[..., Rig]) -> None:
    r = rig("l3")
    ap, cl = r.lab.mac("ap"), r.lab.mac("cl")
    raw = r.lab.socket("cl", socket.AF_PACKET, socket.SOCK_RAW)
    get = struct.pack("!HHHH", 9, 0, 1, 0) + b"get k\r\n"
    good = _frame(ap, cl, get)
    try:
        raw.bind(("eth0", 0))
        before = r.counters(wait=0)
        frames = [
            good[:14 + 10],                                          # truncated IP header
            _frame(ap, cl, get, ip_len_delta=200),                   # IP length > frame
            # A lone first fragment: net_af_packet's fanout asks the kernel to
            # reassemble (PACKET_FANOUT_FLAG_DEFRAG), so it never reaches the port.
            _frame(ap, cl, get, frag=0x2000),
            _frame(ap, cl, struct.pack("!HHHH", 9, 0, 2, 0) + b"get k\r\n"),  # 2 datagrams
            _frame(ap, cl, b"hello"),                                # not a memcached frame
            _frame(ap, cl, struct.pack("!HHHH", 9, 0, 1, 0) + b"no newline"),
            _frame(ap, cl, get, bad_udp_sum=True),
            _frame(ap, cl, get, bad_ip_sum=True),
            good[:-3],                                               # UDP length > IP payload
        ]
        for _ in range(3):
            for f in frames:
                raw.send(f)
        after = r.counters()
    finally:
        raw.close()
    grew = {k: after[k] - before.get(k, 0) for k in after}
    assert grew["bad_truncated"] >= 3
    assert grew["bad_length"] >= 6
    assert grew["ip_fragments"] in (0, 3)
    assert grew["mc_multi_datagram"] == 3
    assert grew["mc_bad_frame"] == 6
    assert grew["bad_udp_checksum"] == 3
    assert grew["bad_ip_checksum"] == 3
    assert grew["mc_forwarded_gets"] == 0 and grew["mc_hits"] == 0  # nothing forwarded
    # Still serving.
    assert r.tcp(VIP, b"set sw:bad:ok 0 0 2\r\nok\r\n") == b"STORED\r\n"
    reply, src = r.get(b"get sw:bad:ok\r\n")
    assert reply == b"VALUE sw:bad:ok 0 2\r\nok\r\nEND\r\n" and src[0] == VIP


# ---- flow rules ----

def test_flow_rules_drop_count_and_kernel(rig: Callable[..., Rig]) -> None:
    rules = [
        # memcached UDP from the client: counted, then dropped.
        {"name": "client-udp", "match": {"protocol": "udp", "dst_port": MC,
                                         "src": f"{CLIENT}/32"}, "chain": ["count", "drop"]},
        # ping: counted, then to the kernel.
        {"name": "icmp", "match": {"protocol": "icmp"}, "chain": ["count", "to-kernel"]},
    ]
    r = rig("l3", rules=rules)
    with pytest.raises(socket.timeout):
        r.get(b"get anything\r\n", timeout=1.0)
    ping = r.lab.exec("cl", "ping", "-c", "2", "-W", "2", VIP, check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert r.tcp(VIP, b"version\r\n").startswith(b"VERSION ")  # no rule: kernel
    c = r.counters()
    out = subprocess.run([sys.executable, "-m", "appliance", "switch-stats", "--config",
                          str(r.app.config_path)], capture_output=True, text=True,
                         cwd=r.tmp, timeout=60)
    assert out.returncode == 0 and "rule:client-udp:packets " in out.stdout, out
    assert c["rule:client-udp:packets"] >= 1
    assert c["function:drop:drop"] >= 1 and c["function:count:next"] >= 3
    assert c["rule:icmp:packets"] >= 2
    assert c["function:to-kernel:kernel"] >= 2
    assert c["mc_hits"] == 0 and c["mc_forwarded_gets"] == 0


def test_down_owner_is_ejected_on_the_fast_path(rig: Callable[..., Rig]) -> None:
    """A back end marked DOWN (here by failing TCP requests through the kernel path) no
    longer receives the fast path's misses: under `eject` they go to the next back end on
    the ring, which answers the client directly."""
    r = rig("l3")
    dead, other = r.lab.backends[0], r.lab.backends[1]
    keys = [k for k in (b"sw:eject:%d" % i for i in range(400)) if r.app_route(k) == dead]
    probe_key, key = keys[0], keys[1]
    assert r.tcp(other, b"set %s 0 0 5\r\nlives\r\n" % key) == b"STORED\r\n"
    reply, src = r.get(b"get %s\r\n" % key)
    assert reply == b"END\r\n" and src[0] == dead  # the owner is still up: sent to it
    proc = r.lab.procs[0]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 20
    while f"backend b0 {dead}:{MC} down after" not in r.app.log():
        assert time.monotonic() < deadline, tail(r.app.log_path)
        r.tcp(VIP, b"get %s\r\n" % probe_key)  # SERVER_ERROR until failure_limit is reached
        time.sleep(0.05)
    time.sleep(0.1)  # the fast path copies back-end states every 10 ms
    reply, src = r.get(b"get %s\r\n" % key)
    assert reply == b"VALUE %s 0 5\r\nlives\r\nEND\r\n" % key
    assert src[0] == other


def test_two_lcores_answer_hits_and_forward_misses(rig: Callable[..., Rig]) -> None:
    """Two lcores, one queue pair each: net_af_packet's fanout spreads the
    client's flows over both; every get is answered right whichever lcore
    (and whichever lcore's reply cache) takes it, and a write through the
    socket path is seen by both."""
    r = rig("l3", lcores=2, vdevs=["net_af_packet0,iface=eth0,qpairs=2"])
    keys = [b"sw:2l:%d" % i for i in range(8)]
    for i, key in enumerate(keys):
        assert r.tcp(VIP, b"set %s 0 0 2\r\nv%d\r\n" % (key, i)) == b"STORED\r\n"
    socks = []
    try:
        for _ in range(12):  # a flow per source port
            s = r.lab.socket("cl", socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((CLIENT, 0))
            socks.append(s)
        for rnd in range(3):
            for n, s in enumerate(socks):
                i = (n + rnd) % len(keys)
                r.reqid += 1
                reply, src = udp_request(s, (VIP, MC), b"get %s\r\n" % keys[i], r.reqid)
                assert reply == b"VALUE %s 0 2\r\nv%d\r\nEND\r\n" % (keys[i], i)
                assert src == (VIP, MC)
        assert r.tcp(VIP, b"set %s 0 0 3\r\nnew\r\n" % keys[0]) == b"STORED\r\n"
        for s in socks:
            r.reqid += 1
            reply, _ = udp_request(s, (VIP, MC), b"get %s\r\n" % keys[0], r.reqid)
            assert reply == b"VALUE %s 0 3\r\nnew\r\nEND\r\n" % keys[0]
        miss = b"sw:2l:miss"
        owner = r.app_route(miss)
        assert r.tcp(owner, b"set %s 0 0 1\r\nm\r\n" % miss) == b"STORED\r\n"
        for s in socks[:4]:
            r.reqid += 1
            reply, src = udp_request(s, (VIP, MC), b"get %s\r\n" % miss, r.reqid)
            assert reply == b"VALUE %s 0 1\r\nm\r\nEND\r\n" % miss and src[0] == owner
    finally:
        for s in socks:
            s.close()
    c = r.counters()
    assert c["mc_hits"] >= 3 * len(socks) + len(socks), c
    assert c["mc_forwarded_gets"] >= 4, c


def _device_resident(r: Rig, n: int) -> dict[bytes, bytes]:
    """n items set through the appliance, then rolled out of the open segment,
    so with no DRAM tier every get of one reads the device."""
    values = {b"sw:dev:%d" % i: (b"<%d>" % i) * 100 for i in range(n)}
    for key, value in values.items():
        assert r.tcp(VIP, b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value)) == b"STORED\r\n"
    # Roll the open segment past them, so their records are read from the device
    # (fillers under routing.admission_max_bytes, so they are kept locally too).
    filler = b"f" * 200_000
    for j in range(15):
        assert r.tcp(VIP, b"set sw:fill:%d 0 0 %d\r\n%s\r\n" % (j, len(filler), filler)) \
            == b"STORED\r\n"
    time.sleep(1.0)  # > flush_interval
    return values


def device_hits_parked(r: Rig) -> dict[bytes, bytes]:
    """40 device-resident keys, each got over UDP: parked on the lcore while its read
    is in flight, answered from the service address with its value. The keys."""
    values = _device_resident(r, 40)
    before = r.counters(wait=0.6)
    for key, value in values.items():
        reply, src = r.get(b"get %s\r\n" % key)
        assert _value(reply) == value, key
        assert src == (VIP, MC)
    c = r.counters()
    assert c["mc_parked"] - before.get("mc_parked", 0) >= len(values) // 2, c
    assert c["mc_hits"] - before["mc_hits"] >= len(values), c
    return values


def test_device_hits_are_parked_and_answered_by_the_lcore(rig: Callable[..., Rig],
                                                          device_dir: Path) -> None:
    """Items only on an O_DIRECT device (no DRAM tier): a get of one is parked
    while its read is in flight, then answered by the lcore from the read with
    the right value, from the service address."""
    r = rig("l3", storage={"hot_tier": "0", "direct_io": True, "segment_size": "2MiB",
                           "device": device_dir / "switch.dat"})
    device_hits_parked(r)


def test_a_full_park_hands_device_hits_to_the_kernel(rig: Callable[..., Rig],
                                                    device_dir: Path) -> None:
    """park: 1 and a burst of gets for device-resident keys: what does not fit
    in the park goes to the kernel path (counted), never a stall, and every get
    is still answered with its value."""
    r = rig("l3", park=1, storage={"hot_tier": "0", "direct_io": True, "segment_size": "2MiB",
                                   "device": device_dir / "switch.dat"})
    values = _device_resident(r, 60)
    before = r.counters(wait=0.6)
    keys = list(values)
    # All at once, each its own request id, then the replies in any order.
    for i, key in enumerate(keys):
        frame = struct.pack("!HHHH", 1000 + i, 0, 1, 0) + b"get %s\r\n" % key
        r.udp.sendto(frame, (VIP, MC))
    got: dict[int, bytes] = {}
    r.udp.settimeout(0.5)
    deadline = time.monotonic() + 10
    while len(got) < len(keys) and time.monotonic() < deadline:
        try:
            data, _ = r.udp.recvfrom(65536)
        except TimeoutError:
            continue
        reqid = struct.unpack("!H", data[:2])[0] - 1000
        got[reqid] = data[8:]
    assert sorted(got) == list(range(len(keys))), f"{len(got)} of {len(keys)} answered"
    for i, key in enumerate(keys):
        assert _value(got[i]) == values[key], key
    c = r.counters()
    assert c["mc_park_full"] - before.get("mc_park_full", 0) > 0, c
    assert c["mc_parked"] - before.get("mc_parked", 0) > 0, c
