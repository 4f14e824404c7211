"""SmartSwitch control plane: config, lifecycle and the `smartswitch` CLI.

The control plane never touches a request: it validates the YAML config,
starts the C data plane (dataplane.fastpath) on worker threads, and stops it.
The subpackages are its planes, each depending only on the ones before it:

* ``config``: the YAML file validated into frozen dataclasses;
* ``storage``: devices, pools, provisioning (one driver per device kind);
* ``proxy``: the ring, the routing table, back-end health;
* ``runtime``: lifecycle, reload, the control facade, switch mode;
* ``cli``: the `smartswitch` command.
"""

from importlib import metadata as _metadata

try:
    # pyproject.toml is the one place the version is written.
    __version__ = _metadata.version("smartswitch")
except _metadata.PackageNotFoundError:  # running from a checkout, not installed
    __version__ = "0+unknown"


class StartError(Exception):
    """The appliance can't start; the message says what failed and what to do.

    Raised by every plane's start-up step (storage, the runner); the CLI prints it as
    one line and exits 2.
    """
