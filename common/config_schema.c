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
    {"run", "mode", CFG_STR, "ppo", 0, 0,
     "training method: ppo (RL4VLM: PPO alone) | gtr (PPO + SFT on the env oracle's corrected "
     "thoughts, DAgger-aggregated) | turbo-sft (PPO + SFT on thoughts the merged teacher writes) | "
     "turbo-kl (PPO with the teacher's reverse KL on the policy's thoughts subtracted from the "
     "advantage); see [guide]"},

    /* ---- guide: the guidance terms of gtr and GTR-Turbo ---- */
    {"guide", "sft_coef", CFG_DOUBLE, "1", 0, 1e6,
     "SFT guidance loss coefficient (one SFT minibatch per PPO minibatch, same optimiser step)"},
    {"guide", "sft_batch", CFG_INT, "16", 1, 100000, "SFT guidance samples per PPO minibatch"},
    {"guide", "buffer", CFG_INT, "8192", 1, 10000000,
     "SFT guidance samples kept (a uniform reservoir of everything aggregated so far)"},
    {"guide", "kl_coef", CFG_DOUBLE, "1", 0, 1e6,
     "beta: the teacher KL of each step subtracted from its advantage (steps with teacher logprobs)"},
    {"guide", "kl_estimator", CFG_STR, "clamp", 0, 0,
     "per-token KL estimate of d = logp_policy - logp_teacher: clamp (clamp(d, 0, kl_clamp), "
     "GTR-Turbo) | plain (d) | abs (|d|) | k3 (exp(-d) - 1 + d) | forward (-d exp(-d))"},
    {"guide", "kl_clamp", CFG_DOUBLE, "10", 0, 1e6, "upper bound of the clamp estimator"},
    {"guide", "kl_with_action", CFG_BOOL, "false", 0, 0,
     "guide the action tokens too (an ablation; GTR-Turbo guides the thought only)"},
    {"guide", "teacher_timeout_ms", CFG_INT, "2000", 1, 600000,
     "turbo modes: how long an actor waits for one teacher attempt; a turn whose teacher does "
     "not answer in time is trained as plain PPO (counted)"},
    {"guide", "teacher_attempts", CFG_INT, "2", 1, 100,
     "turbo modes: attempts per turn over the live teachers before falling back to plain PPO"},

    /* ---- security ---- */
    {"security", "insecure", CFG_BOOL, "false", 0, 0,
     "allow binding a non-loopback address without CURVE keys (anyone who can reach the port "
     "can then talk to the service)"},
    {"security", "server_key", CFG_STR, "", 0, 0,
     "the cluster's CURVE server key: the pair (NAME.key) where the process binds, NAME.pub is "
     "enough where it only connects; set: CURVE on every socket (see `gtrt keygen --help`)"},
    {"security", "client_key", CFG_STR, "", 0, 0,
     "this process's own CURVE key pair (NAME.key), used whenever it connects; required with "
     "server_key on every process that connects anywhere"},
    {"security", "allow", CFG_STR, "", 0, 0,
     "file of client public keys allowed to connect, one Z85 key per line, '#' comments (cat "
     "keys/*.pub > allow); required with server_key on every process that binds"},

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
    {"teacher", "max_batch", CFG_INT, "32", 1, 4096,
     "sequences one batched forward pass takes, gathered from queued requests"},
    {"teacher", "max_wait_ms", CFG_INT, "0", 0, 60000,
     "longest a request waits for company before its batch runs; 0: run as soon as the teacher "
     "is idle (requests that arrive during a forward pass are batched anyway)"},
    {"teacher", "max_seqs", CFG_INT, "32", 1, 62,
     "sequences one logits / generate request may carry (one image frame each)"},
    {"teacher", "max_tokens", CFG_INT, "16384", 1, 100000000,
     "text tokens one request may carry: prompts plus answers (generate: plus max_new)"},
    {"teacher", "max_queue", CFG_INT, "256", 1, 1000000,
     "requests waiting for a batch; more are refused as busy"},
    {"teacher", "gen_temperature", CFG_DOUBLE, "0.2", 0, 100,
     "generate: sampling temperature when the request gives none (0: greedy; GTR-Turbo 0.2)"},
    {"teacher", "gen_top_k", CFG_INT, "5", 0, 100000,
     "generate: sample among the k likeliest tokens when the request gives none (0: all)"},

    /* ---- merge ---- */
    {"teacher", "merge_method", CFG_STR, "sma", 0, 0,
     "checkpoint weights in the merged teacher: sma (all equal) | ema (see teacher.alpha)"},
    {"teacher", "combine", CFG_STR, "ties", 0, 0,
     "how checkpoints are combined: ties (task vectors, sign election) | linear"},
    {"teacher", "alpha", CFG_DOUBLE, "0.5", 1e-6, 1,
     "EMA: teacher <- alpha*new + (1-alpha)*teacher"},
    {"teacher", "density", CFG_DOUBLE, "0.8", 1e-6, 1,
     "TIES: fraction of each tensor's task vector kept, largest magnitudes first"},
    {"teacher", "lambda", CFG_DOUBLE, "1", 1e-6, 1e6,
     "TIES: scale of the merged task vector added to the base"},
    {"teacher", "merge_interval", CFG_INT, "1", 1, 1000000,
     "merge the teacher every this many new checkpoints"},

    /* ---- actor ---- */
    {"actor", "id", CFG_STR, "", 0, 0, "actor id; empty: actor-<host>-<pid>"},
    {"actor", "envs", CFG_INT, "8", 1, 1024, "environments each actor plays in lock step"},
    {"actor", "temperature", CFG_DOUBLE, "0.2", 0, 10, "sampling temperature (GTR-Turbo: 0.2)"},
    {"actor", "top_k", CFG_INT, "5", 0, 100000, "sample among the k likeliest tokens (0: all)"},
    {"actor", "max_new", CFG_INT, "96", 1, 4096, "longest answer in tokens"},
    {"actor", "status_bind", CFG_STR, "", 0, 0,
     "endpoint where the actor answers `gtrt status` (sent and acknowledged steps); empty: none"},
    {"actor", "max_unacked_steps", CFG_INT, "512", 16, 10000000,
     "steps an actor may have unacknowledged before it waits; all actors together "
     "must be able to hold ppo.num_steps, or the learner waits forever"},

    /* ---- ppo (learner) ---- */
    {"ppo", "num_steps", CFG_INT, "256", 1, 10000000, "env steps per PPO update (paper: 1024)"},
    {"ppo", "updates", CFG_INT, "30", 0, 100000000, "updates to run (0: until stopped)"},
    {"ppo", "epochs", CFG_INT, "4", 1, 1000, "passes over each batch"},
    {"ppo", "minibatch", CFG_INT, "32", 1, 1000000, "steps per minibatch"},
    {"ppo", "lr", CFG_DOUBLE, "1e-4", 0, 1, "peak learning rate (AdamW, cosine decay)"},
    {"ppo", "min_lr", CFG_DOUBLE, "0", 0, 1, "learning rate at the end of the cosine"},
    {"ppo", "weight_decay", CFG_DOUBLE, "0", 0, 10, "AdamW weight decay"},
    {"ppo", "grad_clip", CFG_DOUBLE, "0.5", 0, 1e6, "global gradient-norm cap (0: off)"},
    {"ppo", "clip", CFG_DOUBLE, "0.1", 0, 10, "PPO ratio clip"},
    {"ppo", "value_clip", CFG_DOUBLE, "0.1", 0, 1e6, "value clip around the old value"},
    {"ppo", "vf_coef", CFG_DOUBLE, "0.5", 0, 1e6, "value loss coefficient"},
    {"ppo", "ent_coef", CFG_DOUBLE, "0", 0, 1e6, "entropy bonus coefficient"},
    {"ppo", "gamma", CFG_DOUBLE, "0.9", 0, 1, "discount"},
    {"ppo", "gae_lambda", CFG_DOUBLE, "0.95", 0, 1, "GAE lambda"},
    {"ppo", "thought_coef", CFG_DOUBLE, "0.5", 0, 1, "weight of thought tokens in the step log-probability"},
    {"ppo", "max_policy_lag", CFG_INT, "2", 0, 1000000, "steps older than this many versions are dropped"},
    {"ppo", "init_checkpoint", CFG_STR, "", 0, 0,
     "policy to start from (safetensors); empty: random weights of model.preset"},
    {"ppo", "keep_checkpoints", CFG_INT, "3", 1, 1000000, "policy checkpoints kept in the run directory"},

    /* ---- model ---- */
    {"model", "preset", CFG_STR, "small", 0, 0, "tiny | small | base (image size and vocab follow the env)"},

    /* ---- sft ---- */
    {"sft", "steps", CFG_INT, "0", 0, 100000000,
     "`gtrt sft`: optimiser steps; 0: the env's weak-start recipe (points24 1500, ezpoints 250, "
     "numberline 600, blackjack 400)"},
    {"sft", "batch", CFG_INT, "32", 1, 100000, "`gtrt sft`: samples per step"},
    {"sft", "lr", CFG_DOUBLE, "1e-3", 0, 1, "`gtrt sft`: peak learning rate (AdamW, cosine to lr/10)"},
    {"sft", "samples", CFG_INT, "4096", 1, 100000000,
     "`gtrt sft`: oracle samples generated (states from every turn of seeded deals)"},
    {"sft", "seed", CFG_INT, "1", 0, 9.2e18, "`gtrt sft`: seed of the data, the init and the batches"},
    {"sft", "imperfect", CFG_DOUBLE, "0.1", 0, 1,
     "`gtrt sft`: share of answers made wrong on purpose (misread card or another deal's plan)"},
    {"sft", "wrong_action", CFG_DOUBLE, "0", 0, 1,
     "`gtrt sft`: share of answers whose action is a legal one the oracle would not take "
     "(reading kept); with two actions, 0.5 acts at random"},
    {"sft", "eval_episodes", CFG_INT, "200", 0, 100000000,
     "`gtrt sft`: episodes of the closing eval (0: none); sampling as in [eval]"},

    /* ---- eval ---- */
    {"eval", "episodes", CFG_INT, "200", 1, 100000000, "`gtrt eval`: episodes played"},
    {"eval", "seed", CFG_INT, "1", 0, 9.2e18, "`gtrt eval`: seed of the deals and the sampling"},
    {"eval", "temperature", CFG_DOUBLE, "0.2", 0, 10,
     "`gtrt eval`: sampling temperature (0: greedy); GTR-Turbo's rollouts use 0.2"},
    {"eval", "top_k", CFG_INT, "5", 0, 100000, "`gtrt eval`: sample among the k likeliest tokens (0: all)"},
    {"eval", "batch", CFG_INT, "32", 1, 4096, "`gtrt eval`: episodes played in lock step"},
    {"eval", "max_new", CFG_INT, "64", 1, 4096, "`gtrt eval`: longest answer in tokens"},

    /* ---- up (local launcher) ---- */
    {"up", "actors", CFG_INT, "2", 0, 256, "actor processes `gtrt up` starts"},
    {"up", "teachers", CFG_INT, "1", 0, 16, "teacher processes `gtrt up` starts"},
    {"up", "hold_s", CFG_DOUBLE, "3", 0, INF,
     "with ppo.updates = 0: seconds `gtrt up` keeps the system running (0: until Ctrl-C)"},
    {"up", "sft", CFG_BOOL, "true", 0, 0,
     "warm-start with `gtrt sft` first when ppo.init_checkpoint is empty"},
    {"up", "eval_episodes", CFG_INT, "200", 0, 100000000,
     "episodes of the final `gtrt eval` (0: none)"},
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

    /* ---- metrics ---- */
    {"metrics", "tensorboard", CFG_BOOL, "true", 0, 0,
     "write TensorBoard event files into the run directory"},
    {"metrics", "tensorboard_x", CFG_STR, "env_steps", 0, 0,
     "x axis (Event.step) of TensorBoard curves: env_steps | update"},
    {"metrics", "prometheus_bind", CFG_STR, "127.0.0.1:9464", 0, 0,
     "HOST:PORT of the learner's Prometheus endpoint (GET /metrics); empty: off"},

    {0},
};
