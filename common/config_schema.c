/* Every configuration key gtrt knows: section, key, type, default, range,
 * one line of help. `gtrt config` prints them with their effective values.
 * Blocks are per concern; keep each block's keys together. */
#include "common/config.h"

#define INF 1e300

const cfg_key config_schema[] = {
    /* ---- run ---- */
    {"run", "name", CFG_STR, "local", 0, 0, "run name, used in output paths"},
    {"run", "out_dir", CFG_STR, "runs", 0, 0, "directory where runs write outputs"},
    {"run", "seed", CFG_INT, "1", 0, 9.2e18, "root seed of every random stream"},

    /* ---- log ---- */
    {"log", "level", CFG_STR, "info", 0, 0, "debug | info | warn | error"},

    /* ---- net ---- */
    {"net", "heartbeat_ms", CFG_INT, "1000", 10, 600000,
     "heartbeat interval on every long-lived connection"},
    {"net", "liveness", CFG_INT, "3", 2, 100,
     "a peer silent for this many heartbeat intervals is gone"},
    {"net", "max_msg_bytes", CFG_INT, "4194304", 1024, 1073741824,
     "largest inbound frame accepted (ZMQ_MAXMSGSIZE); bigger peers are cut off"},
    {"net", "max_peers", CFG_INT, "1024", 1, 1000000,
     "most peers a service tracks; gone peers are forgotten first"},
    {"net", "linger_ms", CFG_INT, "200", 0, 60000,
     "how long closing sockets may spend flushing queued messages"},
    {"net", "request_timeout_ms", CFG_INT, "2000", 10, 600000,
     "client-side timeout of one request attempt"},
    {"net", "request_retries", CFG_INT, "3", 1, 100, "attempts before a request fails"},
    {"net", "chunk_bytes", CFG_INT, "1048576", 4096, 16777216,
     "checkpoint transfer chunk size"},
    {"net", "fetch_credit", CFG_INT, "4", 1, 64, "checkpoint chunk requests in flight per fetcher"},
    {"net", "max_checkpoint_bytes", CFG_INT, "4294967296", 4096, 1.0e12,
     "largest checkpoint a fetcher accepts"},

    /* ---- learner ---- */
    {"learner", "id", CFG_STR, "learner-0", 0, 0, "learner id shown in status and logs"},
    {"learner", "bind", CFG_STR, "tcp://127.0.0.1:5555", 0, 0,
     "endpoint the learner's ROUTER binds (tcp://*:5555 to listen on all interfaces)"},
    {"learner", "connect", CFG_STR, "tcp://127.0.0.1:5555", 0, 0,
     "endpoint actors and teachers connect to"},
    {"learner", "publish_bind", CFG_STR, "tcp://127.0.0.1:5557", 0, 0,
     "endpoint the learner's PUB (checkpoint announcements) binds"},
    {"learner", "publish_connect", CFG_STR, "tcp://127.0.0.1:5557", 0, 0,
     "endpoint actors and teachers subscribe to for announcements"},

    /* ---- teacher ---- */
    {"teacher", "id", CFG_STR, "", 0, 0, "teacher id; empty: teacher-<host>-<pid>"},
    {"teacher", "bind", CFG_STR, "tcp://127.0.0.1:5556", 0, 0,
     "endpoint the teacher's ROUTER (logits / generate RPC) binds"},
    {"teacher", "advertise", CFG_STR, "", 0, 0,
     "endpoint clients should use for this teacher; empty: same as bind"},

    /* ---- actor ---- */
    {"actor", "id", CFG_STR, "", 0, 0, "actor id; empty: actor-<host>-<pid>"},

    /* ---- up (local launcher) ---- */
    {"up", "actors", CFG_INT, "2", 0, 256, "actor processes `gtrt up` starts"},
    {"up", "teachers", CFG_INT, "1", 0, 16, "teacher processes `gtrt up` starts"},
    {"up", "hold_s", CFG_DOUBLE, "3", 0, INF,
     "seconds `gtrt up` keeps the system running once all services are alive (0: until Ctrl-C)"},
    {"up", "start_timeout_s", CFG_DOUBLE, "30", 1, 3600,
     "seconds to wait for every service to register"},

    /* ---- env ---- */
    {"env", "name", CFG_STR, "points24", 0, 0,
     "environment: numberline | ezpoints | points24 | blackjack"},
    {"env", "seed", CFG_INT, "1", 0, 9.2e18,
     "seed of the deal for `gtrt env` (same seed: same cards, same picture)"},
    {"env", "solvable_only", CFG_BOOL, "true", 0, 0,
     "points24: deal only hands that can make 24"},
    {"env", "image_width", CFG_INT, "0", 0, 4096,
     "observation width in pixels; 0: the env's native size (points24 64x32)"},
    {"env", "image_height", CFG_INT, "0", 0, 4096,
     "observation height in pixels; 0: the env's native size"},
    {"env", "image_channels", CFG_INT, "3", 1, 3, "observation channels: 3 (RGB) or 1 (grey)"},
    {"env", "prompt_actions", CFG_BOOL, "false", 0, 0,
     "list every action in the prompt (longer prompts, RL4VLM style)"},

    {0},
};
