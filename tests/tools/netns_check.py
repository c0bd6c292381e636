#!/usr/bin/python3
"""Small readers and checks for tests/cluster/test_netns.sh.

The shell script runs the processes and the network; this file reads what
they leave behind (`gtrt status --json` replies, the run's metrics.jsonl,
the learner's ingest-state.txt record, its Prometheus text) so that the
script stays readable. Standard library only: it runs on a bare Debian 12.

Subcommands (exit code 0 for yes, 1 with the reason printed for no):
  listen ADDR PORT SECONDS      accept TCP connections for a while (probe target)
  connect ADDR PORT SECONDS     exit 0 once a TCP connection to ADDR:PORT opens
  guidance RUN_DIR AFTER        updates after version AFTER:
                                "guided N unguided M last V updates U" (a partly guided
                                update counts in both N and M)
  record_version RUN_DIR        the version the learner's record names
  record_settled RUN_DIR ID     the steps of actor ID it settled (0 if not in it)
  prom URL                      the per-actor gauges, as JSON on one line
  books RUN_DIR LEARNER.json PROM.json ID=ACTOR.json...
                                the exact step accounting; prints the counts (a summary
                                line, then a line per actor) or why not
"""
import json
import re
import socket
import sys
import time
import urllib.request


def die(msg):
    print(msg)
    sys.exit(1)


# ==== network probes ====


def cmd_listen(addr, port, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, int(port)))
    s.listen(16)
    s.settimeout(0.2)
    end = time.monotonic() + float(seconds)
    while time.monotonic() < end:
        try:
            c, _ = s.accept()
            c.close()
        except socket.timeout:
            pass


def cmd_connect(addr, port, seconds):
    end = time.monotonic() + float(seconds)
    last = "no attempt"
    while time.monotonic() < end:
        try:
            socket.create_connection((addr, int(port)), timeout=1).close()
            print("connected")
            return
        except OSError as e:
            last = str(e)
            time.sleep(0.1)
    die(f"cannot reach {addr}:{port}: {last}")


# ==== metrics.jsonl ====


def metrics_lines(run_dir):
    out = []
    with open(f"{run_dir}/metrics.jsonl") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # the line the learner is writing right now
    return out


def cmd_guidance(run_dir, after):
    """Updates after version `after`, split by whether any of their steps
    carried teacher logprobs (the learner logs guide/guided_share only
    then, so a missing key is a share of 0)."""
    guided = unguided = n = 0
    last = 0
    try:
        lines = metrics_lines(run_dir)
    except FileNotFoundError:
        lines = []
    for j in lines:
        step = int(j.get("step", 0))
        last = max(last, step)
        if step <= int(after):
            continue
        share = j.get("guide/guided_share", 0.0)
        n += 1
        guided += share > 0
        unguided += share < 1
    print(f"guided {guided} unguided {unguided} last {last} updates {n}")


# ==== Prometheus ====


# The learner exports them as gtrt_gtrt_actor_* today (the metrics module
# adds its gtrt_ prefix to names that already have it); take either.
GAUGE = re.compile(r'^(?:gtrt_)?gtrt_actor_(steps_received|steps_stale|steps_invalid|'
                   r'steps_learned|batches_duplicate)\{actor="([^"]*)"\} (\S+)$')


def cmd_prom(url):
    with urllib.request.urlopen(url, timeout=3) as r:
        text = r.read().decode()
    per = {}
    for line in text.splitlines():
        m = GAUGE.match(line.strip())
        if m:
            per.setdefault(m.group(2), {})[m.group(1)] = float(m.group(3))
    print(json.dumps(per))


# ==== the books ====


def read_record(run_dir):
    """ingest-state.txt: the learner's fsynced record of what it settled
    (acknowledged) per actor; see learner/ingest.h and learner/resume.c."""
    tok = open(f"{run_dir}/ingest-state.txt").read().split()
    if tok[0:2] != ["gtrt-learner-state", "1"] or tok[6:8] != ["gtrt-ingest", "2"]:
        raise ValueError("unknown ingest-state.txt format: " + " ".join(tok[:9]))
    rec = {"version": int(tok[3]), "env_steps": int(tok[5]), "actors": {}}
    at, n = 9, int(tok[8])
    for _ in range(n):
        aid = tok[at]
        floor, steps, learned, stale, invalid, dup, na = map(int, tok[at + 2:at + 9])
        rec["actors"][aid] = dict(steps=steps, learned=learned, stale=stale, invalid=invalid,
                                  dup=dup)
        at += 9 + na
    return rec


def cmd_record_version(run_dir):
    print(read_record(run_dir)["version"])


def cmd_record_settled(run_dir, aid):
    a = read_record(run_dir)["actors"].get(aid)
    print(a["steps"] if a else 0)


def cmd_books(run_dir, learner_json, prom_json, *actor_args):
    learner = json.load(open(learner_json))["counters"]
    prom = json.load(open(prom_json))
    rec = read_record(run_dir)
    acked_sum = unacked_sum = learned_sum = 0
    short, detail = [], []
    for arg in actor_args:
        aid, path = arg.split("=", 1)
        c = json.load(open(path))["counters"]
        sent, acked, unacked = c["steps_sent"], c["steps_acked"], c["steps_unacked"]
        if not c.get("waiting_for_acks"):
            die(f"{aid} is still playing (not yet at rest)")
        if sent != acked + unacked:
            die(f"{aid}: steps_sent {sent} != steps_acked {acked} + steps_unacked {unacked}")
        r = rec["actors"].get(aid)
        if r is None:
            die(f"{aid} is not in the learner's record")
        if r["learned"] + r["stale"] + r["invalid"] != r["steps"]:
            die(f"{aid}: the learner's outcomes ({r}) do not add up")
        if r["steps"] != acked:
            die(f"{aid}: the learner settled {r['steps']} steps, the actor saw {acked} acked")
        g = prom.get(aid)
        if g is None:
            die(f"{aid} has no gtrt_actor_* gauges on the learner's Prometheus endpoint")
        if g.get("steps_learned") != r["learned"]:
            die(f"{aid}: gtrt_actor_steps_learned {g.get('steps_learned')} != "
                f"{r['learned']} learned in the record")
        acked_sum += acked
        unacked_sum += unacked
        learned_sum += r["learned"]
        short.append(f"{aid} sent {sent} = acked {acked} + unacked {unacked}, settled "
                     f"{r['steps']}")
        detail.append(f"{aid}: sent {sent} = acked {acked} + unacked {unacked}; the learner "
                      f"settled {r['steps']} = learned {r['learned']} (as its Prometheus "
                      f"gauge says) + stale {r['stale']} + invalid {r['invalid']}, and saw "
                      f"{r['dup']} batches twice; the actor resent {c['batches_resent']} and "
                      f"retried {c['batches_retried']} batches")
    if learner["acks_waiting"] != 0:
        die(f"the learner has {learner['acks_waiting']} acks not sent yet")
    if learner["steps_open"] != unacked_sum:
        die(f"the learner holds {learner['steps_open']} steps open, the actors {unacked_sum}")
    if learner["steps_settled_total"] != acked_sum:
        die(f"the learner settled {learner['steps_settled_total']} steps, the actors saw "
            f"{acked_sum} acked")
    if not (learned_sum == learner["env_steps_learned"] == rec["env_steps"]):
        die(f"steps learned: record {rec['env_steps']}, per actor {learned_sum}, "
            f"status {learner['env_steps_learned']}")
    # First line for the PASS line, then one line per actor.
    print(f"v{rec['version']}, {learned_sum} steps learned; " + "; ".join(short))
    print("\n".join(detail))


def main():
    cmds = {"listen": cmd_listen, "connect": cmd_connect, "guidance": cmd_guidance,
            "prom": cmd_prom, "record_version": cmd_record_version,
            "record_settled": cmd_record_settled, "books": cmd_books}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        die(__doc__)
    try:
        cmds[sys.argv[1]](*sys.argv[2:])
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        die(f"{sys.argv[1]}: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
