"""Storage: devices, pools and their provisioning, and the served pool at start-up.

* ``steps``: the plan's vocabulary (Plan, Step, PoolRegion) and the DeviceDriver protocol;
* ``labelled``: kind file and kind block, which carry a SmartSwitch label;
* ``spdk``: kind spdk (lvols on an SPDK target), imported only when configured;
* ``provision``: the driver registry, plan, apply and state;
* ``serving``: what start-up and the console ask of storage.
"""
