/* A Prometheus text endpoint on a libuv loop.
 *
 * A tiny HTTP/1.x server for one job: answer `GET /metrics` with the text
 * exposition a callback renders, 404 for other paths, 405 for other methods,
 * then close. It never blocks the loop: the request head is read
 * incrementally into a fixed-size buffer (too big: 431), a client that does
 * not finish its request in time is cut off, and at most max_conns
 * connections are open at once (more are accepted and closed at once), so a
 * scraper, a port scanner or garbage cannot stall heartbeats or grow memory.
 * All calls happen on the loop's thread. */
#ifndef GTRT_PROM_H
#define GTRT_PROM_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/err.h"

/* Render the exposition into a malloc'd *body of *len bytes (the server
 * frees it); a nonzero return answers 500. */
typedef int (*prom_render_fn)(void *ud, char **body, size_t *len);

typedef struct prom_opts {
    int max_conns;       /* open connections at once; 0: 16 */
    size_t max_head;     /* request head limit in bytes; 0: 8192 */
    uint64_t timeout_ms; /* per connection, accept to close; 0: 10000 */
} prom_opts;

typedef struct prom_server prom_server;

/* Listen on `bind`: "HOST:PORT" with HOST an IPv4 address, "[IPv6]",
 * "localhost" or "*" (all interfaces); PORT 0 picks a free port. opts may be
 * NULL. On error there is nothing for the caller to undo (a listener that
 * was half set up frees itself the next time the loop runs). */
int prom_server_start(uv_loop_t *loop, const char *bind, const prom_opts *opts,
                      prom_render_fn render, void *ud, prom_server **out, err *e);
/* The port actually listened on. */
int prom_server_port(const prom_server *s);
/* Stop listening, drop open connections and free the server once libuv has
 * closed its handles (the loop must run on for that). Sets *s to NULL;
 * NULL-safe. render is not called after this. */
void prom_server_close(prom_server **s);

#endif
