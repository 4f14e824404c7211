"""The appliance configuration: one YAML file validated into frozen dataclasses.

What callers need is re-exported here (``from appliance.config import Config,
ConfigError, load_config``); the parts live beside it:

* ``yaml_source``: YAML loading that keeps every value's line, and ConfigError;
* ``schema``: the table machinery (``setting``, converters, ``build``);
* ``units``: sizes, durations and percentages as operators write them;
* ``document``: the whole file (memcached, logging, Config) and reading it;
* ``storage``: devices, pools and the device layout's constants;
* ``proxy``, ``spdk``, ``switch``, ``console``: those sections' tables and rules;
* ``passwords``: console password hashes as the config stores them.
"""

from appliance.config.console import ConsoleAuthConfig, ConsoleConfig
from appliance.config.document import (
    Config,
    LoggingConfig,
    MemcachedConfig,
    load_config,
    parse_config,
    summary,
)
from appliance.config.proxy import (
    BackendConfig,
    BackendDefaultsConfig,
    RoutingConfig,
    SparePoolConfig,
)
from appliance.config.spdk import SpdkConfig
from appliance.config.storage import (
    LABEL_BYTES,
    MIN_SEGMENTS_PER_POOL,
    POOL_ALIGN,
    DeviceConfig,
    PoolConfig,
    StorageConfig,
    align_up,
    percent_bytes,
)
from appliance.config.yaml_source import ConfigError

__all__ = ["Config", "ConfigError", "MemcachedConfig", "StorageConfig", "DeviceConfig",
           "PoolConfig", "SpdkConfig", "LoggingConfig", "BackendConfig", "BackendDefaultsConfig",
           "SparePoolConfig", "RoutingConfig", "ConsoleConfig", "ConsoleAuthConfig",
           "load_config", "parse_config", "summary", "LABEL_BYTES", "MIN_SEGMENTS_PER_POOL",
           "POOL_ALIGN", "align_up", "percent_bytes"]
