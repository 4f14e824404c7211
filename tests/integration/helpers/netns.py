"""Network namespaces for switch-mode tests (root only).

One L2 segment, 10.77.0.0/24, made of a bridge in its own namespace and one
veth pair per host: a client (.100), the appliance (its veth driven by DPDK's
net_af_packet, no kernel address; the service address .1 lives on the
exception path's tap) and back ends (.11, .12...) running real memcached with
UDP on. Everything lives in namespaces named after this process, so tests
running at the same time never meet; `close()` deletes them (the veths go
with them).

Sockets for the client are created on a short-lived thread that has entered
the client namespace: a socket keeps the namespace it was created in.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

SUBNET = "10.77.0"
VIP = f"{SUBNET}.1"
CLIENT = f"{SUBNET}.100"
CLONE_NEWNET = 0x40000000
_COUNTER = [0]


def can_run() -> str:
    """'' when this host can build the lab, else why not."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "ethtool", "memcached"):
        if not shutil.which(tool):
            return f"needs {tool}"
    return ""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {res.stderr.strip()}")
    return res


class Lab:
    """The namespaces, veths and back ends of one test."""

    def __init__(self, tmp: Path, nbackends: int = 2, dsr: bool = False) -> None:
        _COUNTER[0] += 1
        self.tag = f"ss{os.getpid() % 100000}x{_COUNTER[0]}"
        self.tmp = tmp
        self.ns: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.backends = [f"{SUBNET}.{11 + i}" for i in range(nbackends)]
        try:
            self._build(dsr)
        except BaseException:
            self.close()
            raise

    def name(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def _netns(self, host: str) -> str:
        ns = self.name(host)
        sh("ip", "netns", "add", ns)
        self.ns.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def _plug(self, host: str) -> str:
        """A veth pair: eth0 in host's namespace, its peer on the bridge."""
        ns = self._netns(host)
        br = self.name("br")
        sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name",
           f"p-{host}", "netns", br)
        sh("ip", "-n", br, "link", "set", f"p-{host}", "master", "br0", "up")
        self.exec(host, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        # DESIGN.md: veth TX checksum offload leaves partial checksums in the
        # frames a packet socket captures; the hosts compute them instead.
        self.exec(host, "ethtool", "-K", "eth0", "tx", "off")
        self.exec(host, "ip", "link", "set", "eth0", "up")
        return ns

    def _build(self, dsr: bool) -> None:
        br = self._netns("br")
        sh("ip", "-n", br, "link", "add", "br0", "type", "bridge")
        # br_netfilter would check (and drop) malformed IPv4 and reassemble
        # fragments on the bridge; the bad-packet tests need them delivered.
        for key in ("iptables", "ip6tables", "arptables"):
            sh("ip", "netns", "exec", br, "sysctl", "-qw", f"net.bridge.bridge-nf-call-{key}=0",
               check=False)
        sh("ip", "-n", br, "link", "set", "br0", "up")
        self._plug("ap")  # no address: DPDK drives it
        self._plug("cl")
        self.exec("cl", "ip", "addr", "add", f"{CLIENT}/24", "dev", "eth0")
        for i, addr in enumerate(self.backends):
            host = f"b{i}"
            self._plug(host)
            self.exec(host, "ip", "addr", "add", f"{addr}/24", "dev", "eth0")
            listen = addr
            if dsr:
                # LVS-DR: the service address on loopback, never answered in ARP.
                self.exec(host, "ip", "addr", "add", f"{VIP}/32", "dev", "lo")
                for key in ("arp_ignore=1", "arp_announce=2"):
                    self.exec(host, "sysctl", "-qw", f"net.ipv4.conf.all.{key}")
                    self.exec(host, "sysctl", "-qw", f"net.ipv4.conf.eth0.{key}")
                listen = f"{VIP},{addr}"
            log = open(self.tmp / f"memcached-{host}.log", "wb")
            self.procs.append(subprocess.Popen(
                ["ip", "netns", "exec", self.name(host), "memcached", "-u", "root",
                 "-l", listen, "-p", "11211", "-U", "11211", "-m", "64", "-t", "1"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            log.close()
        for addr in self.backends:
            self.wait_tcp(addr, 11211)

    def exec(self, host: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.name(host), *args, check=check)

    def prefix(self, host: str) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.name(host))

    def socket(self, host: str, family: int, kind: int, proto: int = 0) -> socket.socket:
        """A socket created inside host's namespace."""
        out: list[Any] = []

        def enter() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(f"/var/run/netns/{self.name(host)}", os.O_RDONLY)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns")
                finally:
                    os.close(fd)
                out.append(socket.socket(family, kind, proto))
            except BaseException as exc:
                out.append(exc)

        t = threading.Thread(target=enter)
        t.start()
        t.join()
        if isinstance(out[0], BaseException):
            raise out[0]
        return out[0]

    def wait_tcp(self, addr: str, port: int, host: str = "cl", timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while True:
            s = self.socket(host, socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(1)
            try:
                s.connect((addr, port))
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
            finally:
                s.close()

    def mac(self, host: str, dev: str = "eth0") -> str:
        return self.exec(host, "cat", f"/sys/class/net/{dev}/address").stdout.strip()

    def close(self) -> None:
        for p in self.procs:
            try:
                os.killpg(p.pid, 9)
            except ProcessLookupError:
                pass
            p.wait(10)
        for ns in reversed(self.ns):
            sh("ip", "netns", "del", ns, check=False)
        self.ns.clear()


# ---- memcached over UDP (protocol.txt: 8-byte frame header) ----

def udp_request(sock: socket.socket, dst: tuple[str, int], payload: bytes, reqid: int,
                timeout: float = 3.0) -> tuple[bytes, tuple[str, int]]:
    """Send one datagram request; gather every reply datagram of reqid.

    Returns:
        (the reply reassembled in sequence order, the address it came from).
    """
    sock.settimeout(timeout)
    sock.sendto(struct.pack("!HHHH", reqid, 0, 1, 0) + payload, dst)
    parts: dict[int, bytes] = {}
    total = None
    src = None
    deadline = time.monotonic() + timeout
    while total is None or len(parts) < total:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        data, src = sock.recvfrom(65536)
        rid, seq, tot, _ = struct.unpack("!HHHH", data[:8])
        if rid != reqid:
            continue
        total = tot
        parts[seq] = data[8:]
        if len(data) > 1400:
            raise AssertionError(f"a reply datagram of {len(data)} bytes (max 1400)")
    assert src is not None
    return b"".join(parts[i] for i in range(total)), src


def tcp_command(sock: socket.socket, line: bytes, until: bytes = b"\r\n") -> bytes:
    """Send one command, read until the reply ends with `until`."""
    sock.sendall(line)
    buf = b""
    while not buf.endswith(until):
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf
