/*
 * ss_api.h - what the Python binding compiles against (see ss_api.cdef.h).
 */
#ifndef SS_API_H
#define SS_API_H

#include "ss_dataplane.h"
#include "ss_device.h"
#include "ss_inspect.h"
#include "ss_proxy.h"
#include "ss_switch.h"

uint32_t ss_abi_version(void);
int ss_counter_count(void);
const char *ss_counter_name(int i);
int ss_counter_is_gauge(int i);
int ss_dataplane_read_counters(struct ss_dataplane *dp, uint64_t *out, int n);
void ss_dataplane_store_stats(struct ss_dataplane *dp, struct ss_store_stats *out);
long ss_dataplane_verify_index(struct ss_dataplane *dp, uint64_t *checked);

#endif
