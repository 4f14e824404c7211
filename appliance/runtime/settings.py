"""The data plane's settings from a config, and creating it.

Pure translation (``dataplane_settings``): touches neither files nor sockets, so it is
unit-testable. The store's part comes from appliance.storage.serving.
"""

from __future__ import annotations

import os
from typing import Any

from appliance import StartError, __version__
from appliance.config import Config
from appliance.storage import provision
from appliance.storage.serving import store_settings
from dataplane.fastpath import (Dataplane, DataplaneCreateError, DataplaneSettings,
                                ObjectsSettings)

TCP_BACKLOG = 1024
MAX_AUTO_WORKERS = 1024  # ss_dataplane_create accepts 1..1024 workers

# memcached release whose replies SmartSwitch matches byte for byte (the
# differential tests run against it). Clients such as libmemcached parse the
# leading numbers of `version` to decide which features the server has (noreply
# needs >= 1.2.5), so the reply leads with it and names SmartSwitch after it.
MEMCACHED_COMPAT_VERSION = "1.6.18"


def protocol_version() -> str:
    """What `version` answers: the memcached release we match, then ours."""
    return f"{MEMCACHED_COMPAT_VERSION}-smartswitch-{__version__}"


def worker_threads(config: Config) -> int:
    """Worker count: the configured number, or one per usable core for auto."""
    if config.memcached.workers is not None:
        return config.memcached.workers
    return max(1, min(MAX_AUTO_WORKERS, len(os.sched_getaffinity(0))))


def dataplane_settings(config: Config, *, listen: bool = True,
                       region: provision.PoolRegion | None = None,
                       capacity: int | None = None,
                       store_device: Any = None,
                       objects: ObjectsSettings | None = None) -> DataplaneSettings:
    """Translate the validated config into struct ss_dataplane_settings.

    Args:
        config: the validated config.
        listen: False opens the store with no TCP or UDP listener (port -1),
            for maintenance commands such as verify-index.
        region: the memcached pool's place on its device (from the
            provisioning plan); default: the first pool after the label.
        capacity: the device's size (from the plan), which sizes the index
            map so the pool can grow to the whole device without a restart.
        store_device: the `struct ss_device *` the pool's driver opened
            (open_store_device; kind spdk), given to the store as
            ss_store_settings.device; None: the store opens the device's path.
        objects: the HTTP listener and objects pool (serving.objects_settings); None:
            no object requests (always so without listeners).
    """
    mc = config.memcached
    return DataplaneSettings(
        listen_host=mc.listen,
        tcp_port=mc.tcp_port if listen else -1,
        udp_port=mc.udp_port if listen and mc.udp_port is not None else -1,
        workers=worker_threads(config) if listen else 1,
        max_connections=mc.max_connections,
        idle_timeout_s=mc.idle_timeout // 1000,
        tcp_backlog=TCP_BACKLOG,
        udp_reply_bytes_per_sec=mc.udp_reply_rate,
        udp_reply_burst_bytes=mc.udp_reply_burst,
        version=protocol_version(),
        store=store_settings(config, region=region, capacity=capacity, device=store_device),
        objects=objects if listen else None,
    )


def create_dataplane(settings: DataplaneSettings) -> Dataplane:
    """Dataplane.create, its refusal as a StartError."""
    try:
        return Dataplane.create(settings)
    except DataplaneCreateError as exc:
        raise StartError(f"cannot start the data plane: {exc}") from None
