"""SmartSwitch's C data plane and its thin Python wrapper (dataplane.fastpath).

The compiled cffi module is private (dataplane._fastpath, built by
dataplane/_build.py); everything else goes through dataplane.fastpath.
"""
