"""SmartSwitch control plane: config, lifecycle and the `smartswitch` CLI.

The control plane never touches a request: it validates the YAML config,
starts the C data plane (dataplane.fastpath) on worker threads, and stops it.
"""

from importlib import metadata as _metadata

try:
    # pyproject.toml is the one place the version is written.
    __version__ = _metadata.version("smartswitch")
except _metadata.PackageNotFoundError:  # running from a checkout, not installed
    __version__ = "0+unknown"
