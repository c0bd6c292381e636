/* Asking a service how it is: `gtrt status` and the launcher use it.
 * The reply is turned into JSON (cJSON) so the table, --json output and
 * scripted checks all read the same thing. */
#ifndef GTRT_STATUS_H
#define GTRT_STATUS_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>

#include "common/err.h"

/* Query `endpoint` (learner or teacher ROUTER). On success *out is a JSON
 * object {"endpoint", "self": {...}, "peers": [...], "counters": {...},
 * "labels": {...}} owned by the caller (cJSON_Delete). `gtrt status` adds
 * "teachers": [...], the status objects of the learner's alive teachers. */
/* As a CURVE client with `sec`'s keys (NULL: plaintext). */
struct security;
int status_fetch(const char *endpoint, int timeout_ms, int retries, int64_t max_msg_bytes,
                 const struct security *sec, cJSON **out, err *e);
/* Print a status object as a human table. */
void status_print(FILE *f, const cJSON *st);
/* Number of alive peers of `role` ("actor", "teacher") in a status object. */
int status_count_alive(const cJSON *st, const char *role);

/* `gtrt status` */
int status_main(int argc, char **argv);

#endif
