"""A real spdk_tgt for the `spdk` tests: started with --no-huge from $SPDK_DIR, stopped after.

Only for tests that run when SPDK_DIR points at an SPDK build tree (build/bin/spdk_tgt and
build/lib/libspdk_*.so); nothing here builds or ships SPDK.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from spdk_bindings import rpc

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


@dataclass
class SpdkTarget:
    """A running spdk_tgt: its process, JSON-RPC client, socket and log."""

    proc: subprocess.Popen[bytes]
    rpc: rpc.SpdkRpc
    sock: Path
    log: Path

    def stop(self) -> None:
        """Close the client and stop the target (SIGTERM, then SIGKILL)."""
        self.rpc.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_S)


def spdk_env(spdk_dir: str) -> dict[str, str]:
    """The environment of a process that loads SPDK's libraries from the build tree
    (a --with-shared build has no run path)."""
    return dict(os.environ, SPDK_DIR=spdk_dir,
                LD_LIBRARY_PATH=str(Path(spdk_dir) / "build/lib"))


def start_spdk_tgt(spdk_dir: str, work: Path) -> SpdkTarget:
    """Start spdk_tgt (one reactor, no hugepages, 1 GiB) with its RPC socket in work."""
    tgt = Path(spdk_dir) / "build/bin/spdk_tgt"
    assert tgt.exists(), f"SPDK_DIR={spdk_dir} has no build/bin/spdk_tgt"
    sock, log = work / "spdk.sock", work / "spdk_tgt.log"
    with open(log, "wb") as out:
        # No core lock file: other targets (other test modules, benches) may run at once.
        proc = subprocess.Popen([str(tgt), "--no-huge", "-s", "1024", "-m", "0x1",
                                 "--disable-cpumask-locks", "-r", str(sock)], env=spdk_env(spdk_dir),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"spdk_tgt exited {proc.returncode}:\n{log.read_text()}")
        if sock.exists():
            try:
                client = rpc.connect(str(sock), timeout=30.0)
                client.framework_wait_init()
                return SpdkTarget(proc, client, sock, log)
            except rpc.SpdkRpcError:
                pass
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
            raise AssertionError(f"spdk_tgt did not answer on {sock} within "
                                 f"{START_TIMEOUT_S:.0f} s:\n{log.read_text()}")
        time.sleep(0.2)
