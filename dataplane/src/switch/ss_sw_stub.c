/*
 * ss_sw_stub.c - switch mode when DPDK was not found at build time
 * (dataplane/_build.py compiles this instead of ss_sw_*.c): every entry
 * point refuses with -ENOTSUP and says how to get DPDK, so socket mode
 * builds and runs without it.
 */
#include <errno.h>
#include <stdio.h>

#include "ss_switch.h"

#define SW_NO_DPDK "SmartSwitch was built without DPDK (pkg-config found no libdpdk): " \
                   "install dpdk-dev and rebuild with `make build`, or use dataplane.mode: socket"

int ss_switch_available(void) { return 0; }

int ss_switch_eal_init(int argc, char **argv, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s", SW_NO_DPDK);
    return -ENOTSUP;
}

int ss_switch_eal_ready(void) { return 0; }

struct ss_switch *ss_switch_create(struct ss_dataplane *dp, const struct ss_switch_settings *s,
                                   char *err, size_t errlen)
{
    snprintf(err, errlen, "%s", SW_NO_DPDK);
    return NULL;
}

int ss_switch_mac(struct ss_switch *sw, uint8_t *mac_out) { return -ENOTSUP; }
int ss_switch_run(struct ss_switch *sw, int lcore) { return -ENOTSUP; }
void ss_switch_stop(struct ss_switch *sw) {}
void ss_switch_destroy(struct ss_switch *sw) {}
int ss_switch_set_neighbour(struct ss_switch *sw, uint32_t addr, const uint8_t *mac)
{
    return -ENOTSUP;
}
int ss_switch_counter_count(struct ss_switch *sw) { return -ENOTSUP; }
int ss_switch_counter_name(struct ss_switch *sw, int i, char *out, size_t outlen)
{
    return -ENOTSUP;
}
int ss_switch_read_counters(struct ss_switch *sw, uint64_t *out, int n) { return -ENOTSUP; }
