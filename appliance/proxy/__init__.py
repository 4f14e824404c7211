"""Proxy mode: which back end owns a key, the routing table, and back-end health.

* ``ring``: the ketama and modula rings, point for point as libmemcached and twemproxy;
* ``routing``: the routing table (struct ss_routing_settings) a config asks for;
* ``health``: watching back-end states and probing the down ones.
"""
