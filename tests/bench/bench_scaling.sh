#!/usr/bin/env bash
# How env steps/s scale with the number of actors: a whole local run
# (`gtrt up`: one learner, the teachers, N actors as processes on loopback)
# on NumberLine with the tiny preset, for N = 1, 2, 4, each for a fixed
# number of PPO updates, then the learner's metrics.jsonl is read.
#
# The rate per update is (env_steps - previous env_steps) / (wall_time -
# previous wall_time) between consecutive metrics.jsonl lines: the steps the
# learner learned from per second of wall time in steady state. The table
# shows its median over the updates after the first 3 (start-up, first
# checkpoint fetches), and beside it the learner's own perf/env_steps_per_s
# of the last update (a cumulative average since the learner started, so it
# includes the start-up). Learning cannot outrun the learner, so the table
# also shows what the actors deliver (steps received per second, stale ones
# included) and the learner's ceiling, ppo.num_steps / update time: where
# the learned rate sits at the ceiling, more actors only add stale steps.
#
# The policy is a quick SFT warm start (made once, shared by every N) so
# that answers have a trained policy's length; SFT_STEPS=0 uses random
# weights instead (answers then run to actor.max_new).
#
# Usage: tests/bench/bench_scaling.sh [GTRT_BINARY]   (default: build/gtrt)
# Environment: ACTORS="1 2 4"  UPDATES=15  TEACHERS=1  SFT_STEPS=60  KEEP=1 (keep the runs)
# Prints figures; never fails on a number.
set -euo pipefail

gtrt=${1:-build/gtrt}
actors_list=${ACTORS:-"1 2 4"}
updates=${UPDATES:-15}
teachers=${TEACHERS:-1}
sft_steps=${SFT_STEPS:-60}
skip=3
num_steps=256 # ppo.num_steps, the schema default

if [[ ! -x $gtrt ]]; then
    echo "bench_scaling: no executable at $gtrt (give the gtrt binary as the first argument)" >&2
    exit 2
fi
gtrt=$(cd "$(dirname "$gtrt")" && pwd)/$(basename "$gtrt")
tmp=$(mktemp -d /tmp/gtrt-bench-scaling-XXXXXX)
if [[ -z ${KEEP:-} ]]; then
    trap 'rm -rf "$tmp"' EXIT
fi

# Free TCP ports on loopback, from the kernel (bound to port 0, then closed).
free_ports() {
    /usr/bin/python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# One line of figures from a run's metrics.jsonl (updates after the first
# $skip only): the median learned rate, how many updates it is over, the last
# perf/env_steps_per_s, the number of lines, the rate of steps received
# (window average: acknowledgements come in bursts), the share of those
# dropped as stale, and the median perf/update_s.
read_metrics() {
    /usr/bin/python3 - "$1" "$skip" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
skip = int(sys.argv[2])
nan = float("nan")
rates, upd = [], []
for prev, cur in zip(rows, rows[1:]):
    if cur["step"] <= skip:
        continue
    dt = cur["wall_time"] - prev["wall_time"]
    if dt > 0:
        rates.append((cur["env_steps"] - prev["env_steps"]) / dt)
    upd.append(cur.get("perf/update_s") or nan)
med = statistics.median(rates) if rates else nan
last = rows[-1].get("perf/env_steps_per_s") if rows else None
recv = stale_pct = nan
win = [r for r in rows if r["step"] >= skip]
if len(win) >= 2:
    a, b = win[0], win[-1]
    got = b["ingest/steps_received"] - a["ingest/steps_received"]
    recv = got / (b["wall_time"] - a["wall_time"])
    stale = b["ingest/steps_stale_dropped"] - a["ingest/steps_stale_dropped"]
    stale_pct = 100.0 * stale / got if got else nan
print(f"{med:.1f} {len(rates)} {last if last is not None else nan:.1f} {len(rows)} "
      f"{recv:.1f} {stale_pct:.0f} {statistics.median(upd) if upd else nan:.2f}")
EOF
}

common_sets=(
    --set env.name=numberline --set model.preset=tiny --set up.sft=false
    --set ppo.updates="$updates" --set ppo.num_steps="$num_steps" --set up.teachers="$teachers"
    --set up.eval_episodes=0
    --set metrics.prometheus_bind= --set metrics.tensorboard=false --set run.out_dir="$tmp"
    --log-level warn
)

init=()
if ((sft_steps > 0)); then
    echo "warm start: gtrt sft --env numberline --preset tiny --steps $sft_steps (once, for every N)"
    "$gtrt" sft --env numberline --preset tiny --steps "$sft_steps" --batch 16 --samples 512 \
        --eval-episodes 0 -o "$tmp/sft.safetensors" --log-level warn >"$tmp/sft.log" 2>&1 ||
        { echo "the warm start failed; see $tmp/sft.log" >&2; cat "$tmp/sft.log" >&2; exit 1; }
    init=(--set ppo.init_checkpoint="$tmp/sft.safetensors")
else
    echo "policy: random weights (answers run to actor.max_new)"
fi

echo "actor scaling: gtrt up on numberline, preset tiny, actor.envs 8 (default), $updates updates" \
     "of ppo.num_steps=$num_steps steps, $teachers teacher(s)"
echo "this machine has $(nproc) cores: with more actors than cores they share them with the" \
     "learner and the teachers"
declare -A rate last_of recv_of stale_of upd_of
for n in $actors_list; do
    read -r p_learn p_pub p_teach <<<"$(free_ports 3)"
    run="scale-$n"
    t0=$SECONDS
    if ! "$gtrt" up "${common_sets[@]}" "${init[@]}" --set up.actors="$n" --set run.name="$run" \
        --set learner.bind="tcp://127.0.0.1:$p_learn" --set learner.connect="tcp://127.0.0.1:$p_learn" \
        --set learner.publish_bind="tcp://127.0.0.1:$p_pub" \
        --set learner.publish_connect="tcp://127.0.0.1:$p_pub" \
        --set teacher.bind="tcp://127.0.0.1:$p_teach" >"$tmp/$run.log" 2>&1; then
        echo "N=$n: gtrt up failed; the last lines of its log:" >&2
        tail -20 "$tmp/$run.log" >&2
    fi
    secs=$((SECONDS - t0))
    jsonl="$tmp/$run/metrics.jsonl"
    if [[ ! -s $jsonl ]]; then
        echo "N=$n: no metrics.jsonl" >&2
        continue
    fi
    read -r med count last lines recv stale upd <<<"$(read_metrics "$jsonl")"
    rate[$n]=$med
    last_of[$n]=$last
    recv_of[$n]=$recv
    stale_of[$n]=$stale
    upd_of[$n]=$upd
    printf "  N=%d: %d updates logged, the whole run took %d s; median over %d updates\n" \
        "$n" "$lines" "$secs" "$count"
done

echo
printf "%-7s %10s %8s %11s %8s %6s %9s %10s %12s\n" "actors" "learned/s" "speedup" \
    "received/s" "speedup" "stale" "update_s" "ceiling/s" "perf (last)"
first=${actors_list%% *}
for n in $actors_list; do
    [[ -z ${rate[$n]:-} ]] && continue
    read -r sp_l sp_r ceil <<<"$(/usr/bin/python3 -c "
r, b, q, c, u = map(float, '${rate[$n]} ${rate[$first]:-nan} ${recv_of[$n]} ${recv_of[$first]:-nan} ${upd_of[$n]}'.split())
print(f'{r / b:.2f}x {q / c:.2f}x {$num_steps / u:.0f}')")"
    printf "%-7s %10s %8s %11s %8s %5s%% %9s %10s %12s\n" "$n" "${rate[$n]}" "$sp_l" \
        "${recv_of[$n]}" "$sp_r" "${stale_of[$n]}" "${upd_of[$n]}" "$ceil" "${last_of[$n]}"
done
cat <<EOF
learned/s:   env steps the learner learned from per second (env_steps between consecutive
             metrics.jsonl lines), median over updates $((skip + 1))..$updates; speedup vs N=$first
received/s:  steps arriving from the actors per second over the same updates (what the actors
             produce, learned or not); stale: the share dropped for policy lag > ppo.max_policy_lag
update_s:    median PPO update time; ceiling/s = ppo.num_steps / update_s, the most the learner
             can learn from per second however many actors there are
perf (last): the learner's perf/env_steps_per_s at the last update (average since it started)
EOF
if [[ -n ${KEEP:-} ]]; then
    echo "runs kept in $tmp"
fi
