"""Thin, typed wrappers over SPDK's JSON-RPC methods, through the `spdk` package's client.

One method per RPC we use, named exactly as the RPC. Arguments are checked here, before
anything is sent, because SPDK answers every wrong type, unknown key or missing key with the
same `-32603 "spdk_json_decode_object failed"`, which names nothing. Errors become
`SpdkRpcError` with method, params, code and message as attributes.

Quirks of the spdk 26.9 client this module works around (see ../shared/spdk/README.md):
`JSONRPCClient.call()` writes `method` and `req_id` into the caller's params dict on error, so
every call gets a fresh dict; its `JSONRPCException` carries only formatted text, so code and
message are parsed back out of it; its receive timeout is measured on `time.process_time()`,
so our deadlines are kept on `time.monotonic()` here.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

# Codes SPDK sent in the recorded sessions: JSON-RPC codes or negative errno values.
EPERM = -1
ENOENT = -2
EIO = -5
EEXIST = -17
ENODEV = -19
EINVAL = -22
EALREADY = -114
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602  # also "No space left on device" from lvol create/resize
INTERNAL_ERROR = -32603  # also "spdk_json_decode_object failed"

DEFAULT_SOCKET = "/var/tmp/spdk.sock"
DEFAULT_TIMEOUT = 30.0

# Methods that change nothing on the target: a provisioning run that finds everything in
# place issues only these. framework_wait_init and bdev_wait_for_examine only wait.
READ_METHODS = frozenset({
    "spdk_get_version", "rpc_get_methods", "framework_wait_init", "bdev_get_bdevs",
    "bdev_wait_for_examine", "bdev_lvol_get_lvstores", "bdev_lvol_get_lvols",
    "bdev_nvme_get_controllers", "nvmf_get_transports", "nvmf_get_subsystems",
    "nvmf_subsystem_get_listeners",
})


class Transport(Protocol):
    """What SpdkRpc needs from a client: JSONRPCClient's `call` and `timeout`."""

    timeout: float

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send one request and return its result or raise JSONRPCException."""

    def close(self) -> None:
        """Drop the connection."""


class SpdkRpcError(Exception):
    """An RPC failed: SPDK's error reply, or no reply at all (subclasses).

    Attributes:
        method: the RPC's name.
        params: the params we sent (a copy; never the dict the client mutated).
        code: SPDK's error code (negative errno or JSON-RPC code), None if no reply.
        message: SPDK's own error text (or the client's, if there was no reply).
        device: the SmartSwitch device (or bdev) the call was about, if known.
    """

    def __init__(self, method: str, params: Mapping[str, Any], code: int | None,
                 message: str, device: str | None = None) -> None:
        self.method = method
        self.params = dict(params)
        self.code = code
        self.message = message
        self.device = device
        super().__init__(str(self))

    def __str__(self) -> str:
        about = f" for device {self.device!r}" if self.device else ""
        shown = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        code = f"SPDK error {self.code}" if self.code is not None else "no reply"
        return (f"{self.method} failed{about}: {self.message} ({code}"
                f"{'; params ' + shown if shown else ''})")

    def is_(self, code: int, message: str | None = None) -> bool:
        """True if this error has `code` (and `message`, when given)."""
        return self.code == code and (message is None or self.message == message)


class SpdkTimeoutError(SpdkRpcError):
    """No reply before the deadline; the connection was closed."""


class SpdkConnectionError(SpdkRpcError):
    """The target could not be reached (not running, wrong socket, closed)."""


def parse_exception_text(text: str) -> tuple[int | None, str]:
    """Code and message from the text of the 26.9 client's JSONRPCException.

    The client formats an error reply as "request:\\n<json>\\nGot JSON-RPC error
    response\\nresponse:\\n<error json>"; anything else (timeout, closed connection) has no
    error object and gives (None, first line of the text).
    """
    marker = "\nresponse:\n"
    if "Got JSON-RPC error response" in text and marker in text:
        tail = text.rsplit(marker, 1)[1]
        try:
            err = json.loads(tail)
        except ValueError:
            err = None
        if isinstance(err, dict) and isinstance(err.get("code"), int):
            return err["code"], str(err.get("message", ""))
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return None, first


def _check_str(method: str, key: str, value: Any, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        raise ValueError(f"{method}: {key} must be a non-empty string, got {value!r}")


def _check_uint(method: str, key: str, value: Any, *, optional: bool = False,
                minimum: int = 0) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{method}: {key} must be an integer >= {minimum}, got {value!r}")


class SpdkRpc:
    """The SPDK RPCs SmartSwitch uses, over one client connection.

    Args:
        transport: a connected `spdk.rpc.client.JSONRPCClient` (or anything with its `call`,
            `timeout` and `close`).
        timeout: seconds allowed for each call.
        device: the device name that errors will name (see `with_device`).
    """

    def __init__(self, transport: Transport, timeout: float = DEFAULT_TIMEOUT,
                 device: str | None = None) -> None:
        # Lists, so that with_device() views share the connection and the deadline.
        self._conn: list[Transport | None] = [transport]
        self.timeout = timeout
        self.device = device
        self._deadline: list[float | None] = [None]
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def with_device(self, device: str) -> SpdkRpc:
        """A view on the same connection whose errors name `device`."""
        view = SpdkRpc.__new__(SpdkRpc)
        view.__dict__.update(self.__dict__)
        view.device = device
        return view

    @contextlib.contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """Bound every call made inside the block to finish within `seconds` in total."""
        outer = self._deadline[0]
        mine = time.monotonic() + seconds
        self._deadline[0] = mine if outer is None else min(outer, mine)
        try:
            yield
        finally:
            self._deadline[0] = outer

    def close(self) -> None:
        """Close the connection (later calls raise SpdkConnectionError)."""
        transport, self._conn[0] = self._conn[0], None
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.close()

    def call(self, method: str, params: Mapping[str, Any] | None = None,
             device: str | None = None) -> Any:
        """Send `method` with `params` (None values dropped) and return its result.

        Raises:
            SpdkRpcError: SPDK answered with an error.
            SpdkTimeoutError: no answer before the per-call timeout or the deadline.
            SpdkConnectionError: no connection.
        """
        from spdk.rpc.client import JSONRPCException

        sent = {k: v for k, v in (params or {}).items() if v is not None}
        about = self.device or device  # the SmartSwitch device, else the bdev
        self.calls.append((method, dict(sent)))
        transport = self._conn[0]
        if transport is None:
            raise SpdkConnectionError(method, sent, None, "not connected to the SPDK target",
                                      about)
        budget = self.timeout
        if self._deadline[0] is not None:
            budget = min(budget, self._deadline[0] - time.monotonic())
        if budget <= 0:
            raise SpdkTimeoutError(method, sent, None, "deadline passed before the call",
                                   about)
        transport.timeout = budget
        started = time.monotonic()
        try:
            # A fresh dict: the client adds method/req_id to it when the call fails.
            return transport.call(method, json.loads(json.dumps(sent)))
        except JSONRPCException as exc:
            text = getattr(exc, "message", None) or str(exc)
            code, message = parse_exception_text(str(text))
            if code is not None:
                raise SpdkRpcError(method, sent, code, message, about) from None
            if text.startswith("Timeout") or time.monotonic() - started >= budget:
                # A late reply would be read as the answer to the next request.
                self.close()
                raise SpdkTimeoutError(method, sent, None,
                                       f"no reply within {budget:.1f} s", about) from None
            self.close()
            raise SpdkConnectionError(method, sent, None, message, about) from None
        except OSError as exc:
            self.close()
            raise SpdkConnectionError(method, sent, None, str(exc), about) from None

    # ---- target --------------------------------------------------------------------------

    def spdk_get_version(self) -> dict[str, Any]:
        """The target's version: {"version": "SPDK v26.05 ...", "fields": {...}}."""
        return self.call("spdk_get_version")

    def rpc_get_methods(self, current: bool | None = None,
                        include_aliases: bool | None = None) -> list[str]:
        """Method names; `current=True` lists only those callable now."""
        return self.call("rpc_get_methods",
                         {"current": current, "include_aliases": include_aliases})

    def framework_wait_init(self) -> bool:
        """Wait until the target's subsystems are initialised."""
        return self.call("framework_wait_init")

    # ---- bdevs ---------------------------------------------------------------------------

    def bdev_get_bdevs(self, name: str | None = None,
                       timeout: int | None = None) -> list[dict[str, Any]]:
        """All bdevs, or the one called `name` (a name or an alias; unknown: ENODEV)."""
        _check_str("bdev_get_bdevs", "name", name, optional=True)
        _check_uint("bdev_get_bdevs", "timeout", timeout, optional=True)
        return self.call("bdev_get_bdevs", {"name": name, "timeout": timeout}, device=name)

    def bdev_wait_for_examine(self) -> bool:
        """Wait until every bdev module has examined every bdev (lvstores loaded)."""
        return self.call("bdev_wait_for_examine")

    def bdev_aio_create(self, name: str, filename: str, block_size: int) -> str:
        """An aio bdev on a file or block device; `block_size` is required on files."""
        _check_str("bdev_aio_create", "name", name)
        _check_str("bdev_aio_create", "filename", filename)
        _check_uint("bdev_aio_create", "block_size", block_size, minimum=512)
        return self.call("bdev_aio_create", {"name": name, "filename": filename,
                                             "block_size": block_size}, device=name)

    def bdev_aio_delete(self, name: str) -> bool:
        """Delete an aio bdev. SPDK does this even when an lvstore is on it: check first."""
        _check_str("bdev_aio_delete", "name", name)
        return self.call("bdev_aio_delete", {"name": name}, device=name)

    def bdev_uring_create(self, name: str, filename: str, block_size: int) -> str:
        """An io_uring bdev on a file or block device."""
        _check_str("bdev_uring_create", "name", name)
        _check_str("bdev_uring_create", "filename", filename)
        _check_uint("bdev_uring_create", "block_size", block_size, minimum=512)
        return self.call("bdev_uring_create", {"name": name, "filename": filename,
                                               "block_size": block_size}, device=name)

    def bdev_uring_delete(self, name: str) -> bool:
        """Delete a uring bdev (same caveat as bdev_aio_delete)."""
        _check_str("bdev_uring_delete", "name", name)
        return self.call("bdev_uring_delete", {"name": name}, device=name)

    def bdev_malloc_create(self, name: str, num_blocks: int, block_size: int) -> str:
        """A RAM disk (tests); the wire parameters are num_blocks and block_size."""
        _check_str("bdev_malloc_create", "name", name)
        _check_uint("bdev_malloc_create", "num_blocks", num_blocks, minimum=1)
        _check_uint("bdev_malloc_create", "block_size", block_size, minimum=512)
        return self.call("bdev_malloc_create", {"name": name, "num_blocks": num_blocks,
                                                "block_size": block_size}, device=name)

    def bdev_malloc_delete(self, name: str) -> bool:
        """Delete a RAM disk."""
        _check_str("bdev_malloc_delete", "name", name)
        return self.call("bdev_malloc_delete", {"name": name}, device=name)

    # ---- NVMe ----------------------------------------------------------------------------

    def bdev_nvme_attach_controller(self, name: str, trtype: str, traddr: str,
                                    adrfam: str | None = None, trsvcid: str | None = None,
                                    subnqn: str | None = None,
                                    ctrlr_loss_timeout_sec: int | None = None,
                                    reconnect_delay_sec: int | None = None,
                                    fast_io_fail_timeout_sec: int | None = None) -> list[str]:
        """Attach an NVMe controller; returns the bdev names it created (may be empty!).

        PCIe: trtype "PCIe", traddr the PCI address. NVMe-oF/TCP: trtype "tcp", adrfam
        "ipv4"/"ipv6", traddr the IP, trsvcid the port (a string), subnqn the subsystem.
        The reconnect settings (seconds; ctrlr_loss_timeout_sec -1: never give up) are
        sent only when given, so SPDK's defaults stand otherwise.
        """
        m = "bdev_nvme_attach_controller"
        _check_str(m, "name", name)
        _check_str(m, "trtype", trtype)
        _check_str(m, "traddr", traddr)
        for key, value in (("adrfam", adrfam), ("trsvcid", trsvcid), ("subnqn", subnqn)):
            _check_str(m, key, value, optional=True)
        if trtype.lower() == "tcp" and not (trsvcid and subnqn):
            raise ValueError(f"{m}: trtype tcp needs trsvcid and subnqn")
        params: dict[str, Any] = {"name": name, "trtype": trtype, "adrfam": adrfam,
                                  "traddr": traddr, "trsvcid": trsvcid, "subnqn": subnqn}
        for key, value in (("ctrlr_loss_timeout_sec", ctrlr_loss_timeout_sec),
                           ("reconnect_delay_sec", reconnect_delay_sec),
                           ("fast_io_fail_timeout_sec", fast_io_fail_timeout_sec)):
            if value is not None:
                if not isinstance(value, int) or isinstance(value, bool) or value < -1:
                    raise ValueError(f"{m}: {key} must be an integer (seconds, -1: never), "
                                     f"got {value!r}")
                params[key] = value
        return self.call(m, params, device=name)

    def bdev_nvme_detach_controller(self, name: str) -> bool:
        """Detach the controller `name` and remove its bdevs."""
        _check_str("bdev_nvme_detach_controller", "name", name)
        return self.call("bdev_nvme_detach_controller", {"name": name}, device=name)

    def bdev_nvme_get_controllers(self, name: str | None = None) -> list[dict[str, Any]]:
        """Attached NVMe controllers (all, or `name`)."""
        _check_str("bdev_nvme_get_controllers", "name", name, optional=True)
        return self.call("bdev_nvme_get_controllers", {"name": name}, device=name)

    # ---- lvol stores and lvols -----------------------------------------------------------

    def bdev_lvol_create_lvstore(self, bdev_name: str, lvs_name: str,
                                 cluster_sz: int | None = None) -> str:
        """Create an lvol store on `bdev_name`; returns its UUID."""
        m = "bdev_lvol_create_lvstore"
        _check_str(m, "bdev_name", bdev_name)
        _check_str(m, "lvs_name", lvs_name)
        _check_uint(m, "cluster_sz", cluster_sz, optional=True, minimum=4096)
        return self.call(m, {"bdev_name": bdev_name, "lvs_name": lvs_name,
                             "cluster_sz": cluster_sz}, device=bdev_name)

    def bdev_lvol_get_lvstores(self, lvs_name: str | None = None,
                               uuid: str | None = None) -> list[dict[str, Any]]:
        """Lvol stores (all, or one by name or UUID; unknown: ENODEV)."""
        _check_str("bdev_lvol_get_lvstores", "lvs_name", lvs_name, optional=True)
        _check_str("bdev_lvol_get_lvstores", "uuid", uuid, optional=True)
        return self.call("bdev_lvol_get_lvstores", {"lvs_name": lvs_name, "uuid": uuid},
                         device=lvs_name or uuid)

    def bdev_lvol_delete_lvstore(self, lvs_name: str) -> bool:
        """Delete an lvol store. SPDK deletes its lvols with it, without asking."""
        _check_str("bdev_lvol_delete_lvstore", "lvs_name", lvs_name)
        return self.call("bdev_lvol_delete_lvstore", {"lvs_name": lvs_name}, device=lvs_name)

    def bdev_lvol_create(self, lvol_name: str, size_in_mib: int, lvs_name: str | None = None,
                         uuid: str | None = None,
                         thin_provision: bool | None = None) -> str:
        """Create an lvol of `size_in_mib` MiB (whole clusters); returns its UUID.

        The lvstore is given by `lvs_name` or `uuid`, exactly one of them. Sizes are MiB
        only: SPDK v26 has no byte-sized parameter any more.
        """
        m = "bdev_lvol_create"
        _check_str(m, "lvol_name", lvol_name)
        _check_uint(m, "size_in_mib", size_in_mib)
        if (lvs_name is None) == (uuid is None):
            raise ValueError(f"{m}: give exactly one of lvs_name and uuid")
        _check_str(m, "lvs_name", lvs_name, optional=True)
        _check_str(m, "uuid", uuid, optional=True)
        if thin_provision is not None and not isinstance(thin_provision, bool):
            raise ValueError(f"{m}: thin_provision must be a bool, got {thin_provision!r}")
        params: dict[str, Any] = {"uuid": uuid, "lvs_name": lvs_name, "lvol_name": lvol_name,
                                  "size_in_mib": size_in_mib, "thin_provision": thin_provision}
        if uuid is None:
            params = {"lvs_name": lvs_name, "lvol_name": lvol_name,
                      "size_in_mib": size_in_mib, "thin_provision": thin_provision}
        return self.call(m, params, device=f"{lvs_name or uuid}/{lvol_name}")

    def bdev_lvol_get_lvols(self, lvs_name: str | None = None,
                            lvs_uuid: str | None = None) -> list[dict[str, Any]]:
        """Lvols (all, or those of one lvstore; unknown lvstore: ENODEV)."""
        _check_str("bdev_lvol_get_lvols", "lvs_name", lvs_name, optional=True)
        _check_str("bdev_lvol_get_lvols", "lvs_uuid", lvs_uuid, optional=True)
        return self.call("bdev_lvol_get_lvols", {"lvs_name": lvs_name, "lvs_uuid": lvs_uuid},
                         device=lvs_name or lvs_uuid)

    def bdev_lvol_resize(self, name: str, size_in_mib: int) -> bool:
        """Grow or shrink the lvol `name` (UUID or "lvs/lvol") to `size_in_mib` MiB."""
        _check_str("bdev_lvol_resize", "name", name)
        _check_uint("bdev_lvol_resize", "size_in_mib", size_in_mib)
        return self.call("bdev_lvol_resize", {"name": name, "size_in_mib": size_in_mib},
                         device=name)

    def bdev_lvol_delete(self, name: str) -> bool:
        """Delete the lvol `name`. SPDK does it even while it is exported: check first."""
        _check_str("bdev_lvol_delete", "name", name)
        return self.call("bdev_lvol_delete", {"name": name}, device=name)


    # ---- NVMe-oF target (the export the data path connects to) ---------------------------

    def nvmf_get_transports(self, trtype: str | None = None) -> list[dict[str, Any]]:
        """The target's NVMe-oF transports (all, or the one of `trtype`)."""
        _check_str("nvmf_get_transports", "trtype", trtype, optional=True)
        return self.call("nvmf_get_transports", {"trtype": trtype})

    def nvmf_create_transport(self, trtype: str) -> bool:
        """Create a transport ("TCP") with SPDK's defaults; a second one of a type fails."""
        _check_str("nvmf_create_transport", "trtype", trtype)
        return self.call("nvmf_create_transport", {"trtype": trtype})

    def nvmf_create_subsystem(self, nqn: str, serial_number: str | None = None,
                              model_number: str | None = None,
                              allow_any_host: bool | None = None,
                              max_namespaces: int | None = None) -> bool:
        """Create the subsystem `nqn` (a duplicate NQN fails with SPDK's -32603)."""
        m = "nvmf_create_subsystem"
        _check_nqn(m, nqn)
        for key, value, most in (("serial_number", serial_number, 20),
                                 ("model_number", model_number, 40)):
            _check_str(m, key, value, optional=True)
            if value is not None and (len(value) > most or not value.isascii()):
                raise ValueError(f"{m}: {key} must be at most {most} ASCII characters, "
                                 f"got {value!r}")
        _check_bool(m, "allow_any_host", allow_any_host)
        _check_uint(m, "max_namespaces", max_namespaces, optional=True, minimum=1)
        return self.call(m, {"nqn": nqn, "serial_number": serial_number,
                             "model_number": model_number, "allow_any_host": allow_any_host,
                             "max_namespaces": max_namespaces}, device=nqn)

    def nvmf_get_subsystems(self, nqn: str | None = None) -> list[dict[str, Any]]:
        """Subsystems (all, the discovery subsystem included, or `nqn`)."""
        if nqn is not None:
            _check_nqn("nvmf_get_subsystems", nqn)
        return self.call("nvmf_get_subsystems", {"nqn": nqn}, device=nqn)

    def nvmf_subsystem_add_ns(self, nqn: str, namespace: Mapping[str, Any]) -> int:
        """Add a namespace (`namespace["bdev_name"]`, a bdev name or alias); returns its NSID.

        SPDK answers a missing bdev and a bdev already claimed (exported elsewhere) alike,
        with -32602 "Invalid parameters".
        """
        m = "nvmf_subsystem_add_ns"
        _check_nqn(m, nqn)
        if not isinstance(namespace, Mapping):
            raise ValueError(f"{m}: namespace must be a mapping, got {namespace!r}")
        unknown = set(namespace) - {"bdev_name", "nsid", "uuid", "nguid", "eui64", "ptpl_file",
                                    "anagrpid", "no_auto_visible"}
        if unknown:
            raise ValueError(f"{m}: unknown namespace keys {sorted(unknown)}")
        _check_str(m, "namespace.bdev_name", namespace.get("bdev_name"))
        _check_uint(m, "namespace.nsid", namespace.get("nsid"), optional=True, minimum=1)
        _check_str(m, "namespace.uuid", namespace.get("uuid"), optional=True)
        nguid = namespace.get("nguid")
        if nguid is not None and not (isinstance(nguid, str) and len(nguid) == 32
                                      and all(c in "0123456789abcdefABCDEF" for c in nguid)):
            raise ValueError(f"{m}: namespace.nguid must be 32 hex digits, got {nguid!r}")
        ns = {k: v for k, v in namespace.items() if v is not None}
        return self.call(m, {"nqn": nqn, "namespace": ns}, device=nqn)

    def nvmf_subsystem_add_listener(self, nqn: str, listen_address: Mapping[str, Any]) -> bool:
        """Listen for `nqn` on `listen_address` (trtype, adrfam, traddr, trsvcid strings)."""
        m = "nvmf_subsystem_add_listener"
        _check_nqn(m, nqn)
        addr = _check_address(m, listen_address)
        return self.call(m, {"nqn": nqn, "listen_address": addr}, device=nqn)

    def nvmf_subsystem_get_listeners(self, nqn: str) -> list[dict[str, Any]]:
        """The listeners of `nqn`: [{"address": {trtype, adrfam, traddr, trsvcid}}, ...]."""
        _check_nqn("nvmf_subsystem_get_listeners", nqn)
        return self.call("nvmf_subsystem_get_listeners", {"nqn": nqn}, device=nqn)


def _check_nqn(method: str, nqn: Any) -> None:
    # NVMe base specification: an NQN starts with "nqn." and is at most 223 bytes.
    if not isinstance(nqn, str) or not nqn.startswith("nqn.") or len(nqn.encode()) > 223:
        raise ValueError(f"{method}: nqn must be a string starting with 'nqn.' of at most "
                         f"223 bytes, got {nqn!r}")


def _check_bool(method: str, key: str, value: Any) -> None:
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{method}: {key} must be a bool, got {value!r}")


def _check_address(method: str, addr: Any) -> dict[str, str]:
    if not isinstance(addr, Mapping):
        raise ValueError(f"{method}: listen_address must be a mapping, got {addr!r}")
    unknown = set(addr) - {"trtype", "adrfam", "traddr", "trsvcid"}
    if unknown:
        raise ValueError(f"{method}: unknown listen_address keys {sorted(unknown)}")
    for key in ("trtype", "traddr"):
        _check_str(method, f"listen_address.{key}", addr.get(key))
    for key in ("adrfam", "trsvcid"):
        _check_str(method, f"listen_address.{key}", addr.get(key), optional=True)
    return {k: v for k, v in addr.items() if v is not None}


def connect(socket_path: str = DEFAULT_SOCKET, timeout: float = DEFAULT_TIMEOUT,
            device: str | None = None, port: int | None = None) -> SpdkRpc:
    """Connect to spdk_tgt's RPC socket (a Unix path, or an IP address with `port`).

    Raises:
        SpdkConnectionError: nothing listens there (the message says which socket).
    """
    from spdk.rpc.client import JSONRPCClient, JSONRPCException

    try:
        client = JSONRPCClient(socket_path, port, timeout=timeout)
    except (JSONRPCException, OSError) as exc:
        text = getattr(exc, "message", None) or str(exc)
        raise SpdkConnectionError("connect", {"addr": socket_path}, None,
                                  " ".join(str(text).split()) + " (is spdk_tgt running with "
                                  f"-r {socket_path}?)", device) from None
    return SpdkRpc(client, timeout=timeout, device=device)
