/*
 * ss_api.h - what the Python binding compiles against. cffi sees the parts
 * marked cffi: begin/end here and in every header included from here
 * (dataplane/_cdef.py assembles them), so there is no second copy.
 */
#ifndef SS_API_H
#define SS_API_H

#include "ss_dataplane.h"
#include "ss_device.h"
#include "ss_http.h"
#include "ss_inspect.h"
#include "ss_proxy.h"
#include "ss_switch.h"

/* cffi: begin */
/* The digest of these declarations this build was made from (dataplane/_cdef.py);
 * Python refuses a module whose digest differs from its headers'. */
uint32_t ss_abi_version(void);
int ss_counter_count(void);
const char *ss_counter_name(int i);
int ss_counter_is_gauge(int i);
int ss_dataplane_read_counters(struct ss_dataplane *dp, uint64_t *out, int n);
void ss_dataplane_store_stats(struct ss_dataplane *dp, struct ss_store_stats *out);
long ss_dataplane_verify_index(struct ss_dataplane *dp, uint64_t *checked);
/* cffi: end */

#endif
