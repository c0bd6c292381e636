#!/usr/bin/env bash
# A real single-node Slurm cluster runs deploy/slurm/gtrt.sbatch and
# deploy/slurm/gtrt-add-actors.sbatch. The test starts munged, slurmctld and
# slurmd as root with everything (configuration, state, spool, logs, munge
# key and sockets) in one temporary directory and free ports, no systemd and
# no cgroups (proctrack/linuxproc, task/none), names the node "localhost" so
# that the endpoints the scripts derive from the allocation resolve on any
# machine, then submits a short NumberLine run (tiny model, SFT warm start,
# one learner, one teacher, two actors, a few updates, final eval) and, at
# the same time, a second job adding one actor to it. It passes only when
# both jobs completed with exit code 0, the run has its SFT checkpoint,
# policy checkpoints up to the update budget, a final eval result, clean
# stops in every step log, a teacher reached at its advertised endpoint, and
# the extra actor registered and had its steps learned from. A third job
# then continues the same run from its last version (GTRT_RESUME=auto, no
# SFT) for two more updates, as a job resubmitted after a time limit would.
# Daemons, job processes and the temporary directory are removed on every
# exit.
# Needs root and Debian's slurmctld, slurmd, slurm-client and munge
# (deploy/install-deps.sh). GTRT_BIN: the gtrt executable; GTRT_SOURCE_DIR:
# the repository; GTRT_KEEP_TMP=1 keeps the temporary directory.
set -uo pipefail

T0=$SECONDS
say() { printf 'test_slurm: %s\n' "$*"; }
TMP=""
fail() {
  say "FAIL: $*" >&2
  [ -n "$TMP" ] && dump_logs >&2
  say "failed after $((SECONDS - T0)) s" >&2
  exit 1
}

# ==== prerequisites ====

SRC=${GTRT_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
GTRT_BIN=${GTRT_BIN:-$SRC/build/gtrt}
[ -x "$GTRT_BIN" ] || fail "GTRT_BIN=$GTRT_BIN is not an executable (build gtrt first)"
GTRT_BIN=$(cd "$(dirname "$GTRT_BIN")" && pwd)/$(basename "$GTRT_BIN")
SBATCH_MAIN=$SRC/deploy/slurm/gtrt.sbatch
SBATCH_ADD=$SRC/deploy/slurm/gtrt-add-actors.sbatch
{ [ -r "$SBATCH_MAIN" ] && [ -r "$SBATCH_ADD" ]; } || fail "no deploy/slurm scripts under GTRT_SOURCE_DIR=$SRC"
[ "$(id -u)" = 0 ] || fail "must run as root (slurmd launches the job steps as SlurmdUser=root)"
missing=()
for c in munged munge unmunge slurmctld slurmd sbatch squeue scontrol sinfo scancel srun /usr/bin/python3; do
  command -v "$c" >/dev/null || missing+=("$c")
done
[ ${#missing[@]} -eq 0 ] ||
  fail "missing ${missing[*]}: install Slurm and munge with deploy/install-deps.sh (slurmctld slurmd slurm-client munge)"

# Nothing from an enclosing Slurm job (or a system slurm.conf) may leak in.
while read -r v; do unset "$v"; done < <(compgen -v SLURM_)

# ==== the temporary cluster ====

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gtrt-slurm.XXXXXX") || fail "mktemp"
TAG="GTRT_SLURM_TEST_TAG=$TMP" # in the environment of every daemon and job process
export SLURM_CONF=$TMP/etc/slurm.conf

dump_logs() {
  local f
  for f in "$TMP"/work/*.out "$TMP"/runs/*/slurm-*/*.log "$TMP"/log/*.log "$TMP"/munge/munged.log; do
    [ -f "$f" ] || continue
    echo "---- ${f#"$TMP"/} (last 25 lines) ----"
    tail -n 25 "$f"
  done
}

# tag_pids: processes (not this shell) with the tag in their environment
tag_pids() {
  grep -lsxzF "$TAG" /proc/[0-9]*/environ | cut -d/ -f3 | grep -vx "$$"
}

cleanup() {
  local rc=$? p pid try daemons=() left=()
  trap - EXIT INT TERM
  if [ -r "$SLURM_CONF" ] && [ -r "$TMP/run/slurmctld.pid" ]; then
    # jobs first, so that their steps stop cleanly; 15 s at most
    for j in $(squeue -h -o %i 2>/dev/null); do scancel "$j" 2>/dev/null; done
    for try in $(seq 1 30); do
      [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
  for p in "$TMP"/run/slurmd.pid "$TMP"/run/slurmctld.pid "$TMP"/run/munged.pid; do
    pid=$(cat "$p" 2>/dev/null) && [ -n "$pid" ] && kill "$pid" 2>/dev/null && daemons+=("$pid")
  done
  for try in $(seq 1 20); do
    left=()
    for pid in ${daemons[@]+"${daemons[@]}"}; do kill -0 "$pid" 2>/dev/null && left+=("$pid"); done
    [ ${#left[@]} -eq 0 ] && break
    sleep 0.25
  done
  # whatever is left of ours (slurmstepd, job steps): by id, found by the tag
  for try in 1 2 3 4 5 6 7 8; do
    mapfile -t left < <(tag_pids)
    [ ${#left[@]} -eq 0 ] && break
    for pid in "${left[@]}"; do kill "$([ "$try" -gt 4 ] && echo -KILL || echo -TERM)" "$pid" 2>/dev/null; done
    sleep 0.5
  done
  [ ${#left[@]} -eq 0 ] || say "WARNING: processes still running: ${left[*]}" >&2
  [ -n "${T_CHECKS:-}" ] && say "teardown took $((SECONDS - T_CHECKS)) s"
  if [ "${GTRT_KEEP_TMP:-0}" = 1 ]; then
    say "kept $TMP"
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

# munged checks that the socket's directory (and those above it) can be
# traversed by all, and that the key is private.
chmod 755 "$TMP"
mkdir -p "$TMP/etc" "$TMP/run" "$TMP/log" "$TMP/state" "$TMP/spool" "$TMP/munge" "$TMP/work" "$TMP/runs"
chmod 700 "$TMP/munge"
head -c 1024 /dev/urandom > "$TMP/munge/munge.key"
chmod 600 "$TMP/munge/munge.key"
env "$TAG" munged --socket="$TMP/run/munge.socket" --key-file="$TMP/munge/munge.key" \
  --log-file="$TMP/munge/munged.log" --pid-file="$TMP/run/munged.pid" \
  --seed-file="$TMP/munge/munged.seed" || fail "munged did not start"
munge -S "$TMP/run/munge.socket" -n | unmunge -S "$TMP/run/munge.socket" >/dev/null ||
  fail "munge credentials do not round-trip through munged"

# Free ports: slurmctld, slurmd, and an 11-port block for gtrt (BASE..BASE+10).
read -r CTLD_PORT SLURMD_PORT BASE < <(/usr/bin/python3 - <<'EOF'
import random, socket
def free(ports):
    socks = []
    try:
        for p in ports:
            s = socket.socket(); s.bind(("", p)); socks.append(s)
        return True
    except OSError:
        return False
    finally:
        for s in socks: s.close()
rng = random.Random()
picked = []
while len(picked) < 3:
    base = rng.randrange(20000, 60000)
    block = range(base, base + (11 if len(picked) == 2 else 1))
    if free(block) and all(abs(base - q) > 20 for q in picked):
        picked.append(base)
print(*picked)
EOF
)
[ -n "${BASE:-}" ] || fail "could not pick free ports"

cat > "$SLURM_CONF" <<EOF
# single-node test cluster of tests/cluster/test_slurm.sh
ClusterName=gtrttest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$TMP/run/munge.socket
StateSaveLocation=$TMP/state
SlurmdSpoolDir=$TMP/spool
SlurmctldPidFile=$TMP/run/slurmctld.pid
SlurmdPidFile=$TMP/run/slurmd.pid
SlurmctldLogFile=$TMP/log/slurmctld.log
SlurmdLogFile=$TMP/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$TMP/etc/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobContainerType=job_container/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# the node is declared with more CPUs than a CI machine may have: trust it
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=600
MailProg=/bin/true
NodeName=localhost NodeAddr=127.0.0.1 CPUs=16 RealMemory=2000 State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
: > "$TMP/etc/plugstack.conf"

env "$TAG" slurmctld -i || fail "slurmctld did not start"
env "$TAG" slurmd -N localhost || fail "slurmd did not start"
for _ in $(seq 1 60); do
  state=$(sinfo -h -n localhost -o %T 2>/dev/null)
  [ "$state" = idle ] && break
  sleep 0.5
done
[ "${state:-}" = idle ] || fail "the node did not become idle (state '${state:-none}')"
say "Slurm up in $((SECONDS - T0)) s (slurmctld :$CTLD_PORT, slurmd :$SLURMD_PORT, gtrt base port $BASE)"

# ==== the run ====

UPDATES=8
EVAL_EPISODES=20
cat > "$TMP/work/tiny.ini" <<'EOF'
; test_slurm.sh: a run of a few seconds
[run]
name = slurm-test
out_dir = ../runs
[env]
name = numberline
[model]
preset = tiny
[sft]
steps = 30
samples = 512
eval_episodes = 0
[ppo]
num_steps = 64
minibatch = 32
updates = 8
[actor]
envs = 8
max_unacked_steps = 256
[net]
heartbeat_ms = 200
[up]
teachers = 1
eval_episodes = 20
EOF
RUN=$TMP/runs/slurm-test

# With `gtrt keygen` (the normal case) the main job makes its own CURVE keys
# in RUN/keys and the second job finds the learner and the keys through
# RUN/cluster.env (--run-dir); with an older gtrt both run with
# GTRT_INSECURE=1 and the second job is given --learner HOST:PORT.
if "$GTRT_BIN" keygen --help >/dev/null 2>&1; then
  SECURE=1 SEC_ENV=() ADD_ARGS=(--run-dir ../runs/slurm-test)
  ADD_LOGS=$RUN/slurm-
  say "security: CURVE keys made by the job (gtrt keygen) in $RUN/keys"
else
  SECURE=0 SEC_ENV=(GTRT_INSECURE=1) ADD_ARGS=(--learner "localhost:$BASE")
  ADD_LOGS=$TMP/work/gtrt-actors-
  say "NOTE: this gtrt has no 'keygen' command: the jobs run with GTRT_INSECURE=1"
fi

COMMON_ENV=("$TAG" GTRT_BIN="$GTRT_BIN" GTRT_CONFIG=tiny.ini GTRT_POLL=1 GTRT_SRUN_OPTS=
            GTRT_START_TIMEOUT=90 GTRT_STOP_GRACE=20 ${SEC_ENV[@]+"${SEC_ENV[@]}"})
cd "$TMP/work" || fail "cd $TMP/work"
MAIN=$(env "${COMMON_ENV[@]}" GTRT_BASE_PORT="$BASE" GTRT_ACTORS_PER_NODE=2 GTRT_PROMETHEUS= \
       sbatch --parsable -N1 -c1 -t 5 -o "$TMP/work/main-%j.out" "$SBATCH_MAIN") ||
  fail "sbatch gtrt.sbatch was refused"
# submitted at once: its actor connects in any order and registers when the learner is up
ADD=$(env "${COMMON_ENV[@]}" GTRT_ACTORS_PER_NODE=1 \
      sbatch --parsable -N1 -c1 -t 5 -o "$TMP/work/add-%j.out" "$SBATCH_ADD" "${ADD_ARGS[@]}") ||
  fail "sbatch gtrt-add-actors.sbatch was refused"
MAIN=${MAIN%%;*} ADD=${ADD%%;*}
say "submitted job $MAIN (gtrt.sbatch) and job $ADD (gtrt-add-actors.sbatch)"

job_field() { scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'; }
# The second job follows the first: once the first has left the queue the
# second gets 30 s to notice and stop.
t_jobs=$SECONDS
while [ -n "$(squeue -h -j "$MAIN" -o %i 2>/dev/null)" ]; do
  [ $((SECONDS - t_jobs)) -lt 150 ] || fail "job $MAIN did not finish within 150 s: $(squeue -j "$MAIN,$ADD")"
  sleep 1
done
state=$(job_field "$MAIN" JobState) code=$(job_field "$MAIN" ExitCode)
{ [ "$state" = COMPLETED ] && [ "$code" = 0:0 ]; } ||
  fail "job $MAIN (gtrt.sbatch) ended $state with exit code ${code:-?} (wanted COMPLETED, 0:0)"
t_main=$SECONDS
while [ -n "$(squeue -h -j "$ADD" -o %i 2>/dev/null)" ]; do
  [ $((SECONDS - t_main)) -lt 30 ] ||
    fail "job $ADD (gtrt-add-actors.sbatch) was still running 30 s after job $MAIN ended"
  sleep 1
done
say "both jobs ended after $((SECONDS - t_jobs)) s"

# ==== checks ====

for j in "$MAIN" "$ADD"; do
  state=$(job_field "$j" JobState) code=$(job_field "$j" ExitCode)
  { [ "$state" = COMPLETED ] && [ "$code" = 0:0 ]; } ||
    fail "job $j ended $state with exit code ${code:-?} (wanted COMPLETED, 0:0)"
done
MAIN_OUT=$TMP/work/main-$MAIN.out ADD_OUT=$TMP/work/add-$ADD.out
LOGS=$RUN/slurm-$MAIN
grep -q "the learner has done its $UPDATES updates" "$MAIN_OUT" ||
  fail "gtrt.sbatch did not report the end of the $UPDATES updates"
{ [ -s "$RUN/sft.safetensors" ] && [ -s "$LOGS/sft.log" ]; } || fail "no SFT warm start in $RUN"
[ -s "$RUN/checkpoints/policy-v$(printf %06d $UPDATES).safetensors" ] ||
  fail "no checkpoint of update $UPDATES in $RUN/checkpoints"
/usr/bin/python3 - "$RUN/eval-final.json" "$EVAL_EPISODES" "$UPDATES" <<'EOF' || fail "bad final eval result"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["episodes"] == int(sys.argv[2]), r
assert 0.0 <= r["success_rate"] <= 1.0, r
assert r["checkpoint"].endswith("policy-v%06d.safetensors" % int(sys.argv[3])), r
print("test_slurm: final eval of v%s: success %.2f over %d episodes" % (sys.argv[3], r["success_rate"], r["episodes"]))
EOF
for n in learner teacher-0 actor-localhost-0 actor-localhost-1; do
  [ -r "$LOGS/$n.log" ] || fail "no step log $LOGS/$n.log"
  grep -q ': stopped' "$LOGS/$n.log" || fail "$n did not stop cleanly (no 'stopped' in its log)"
  [ "$n" = learner ] || grep -q "learner/learner-0: [a-z]* $n joined" "$LOGS/learner.log" ||
    fail "the learner never saw $n join"
done
grep -Eq 'teachers 1/1 \(1 answering' "$MAIN_OUT" ||
  fail "the teacher was never reached at its advertised endpoint"
EXTRA=actor-j$ADD-localhost-0
grep -q "actor $EXTRA joined" "$LOGS/learner.log" || fail "the learner never saw the added actor $EXTRA"
grep -q "^$EXTRA " "$RUN/ingest-state.txt" || fail "the learner's record has no steps of $EXTRA"
grep -q "the learner has done its $UPDATES updates" "$ADD_OUT" ||
  fail "gtrt-add-actors.sbatch did not end with the learner's budget"
grep -q ': stopped' "$ADD_LOGS$ADD/$EXTRA.log" || fail "$EXTRA did not stop cleanly"
if [ $SECURE = 1 ]; then
  grep -q "^server_key = $RUN/keys/server.key" "$RUN/config.ini" ||
    fail "the learner did not run with the CURVE server key $RUN/keys/server.key"
  grep -q "CURVE on" "$LOGS/learner.log" || fail "the learner log does not say CURVE is on"
fi

say "jobs $MAIN and $ADD passed their checks; resubmitting gtrt.sbatch for 2 more updates"

# ==== a second job continues the run (GTRT_RESUME=auto), as after a time limit ====

MORE=$((UPDATES + 2))
AGAIN=$(env "${COMMON_ENV[@]}" GTRT_BASE_PORT="$BASE" GTRT_ACTORS_PER_NODE=1 GTRT_PROMETHEUS= \
        GTRT_SET="ppo.updates=$MORE" GTRT_EVAL_EPISODES=10 \
        sbatch --parsable -N1 -c1 -t 5 -o "$TMP/work/main-%j.out" "$SBATCH_MAIN") ||
  fail "sbatch gtrt.sbatch (again) was refused"
AGAIN=${AGAIN%%;*}
t_again=$SECONDS
while [ -n "$(squeue -h -j "$AGAIN" -o %i 2>/dev/null)" ]; do
  [ $((SECONDS - t_again)) -lt 120 ] || fail "job $AGAIN did not finish within 120 s"
  sleep 1
done
state=$(job_field "$AGAIN" JobState) code=$(job_field "$AGAIN" ExitCode)
{ [ "$state" = COMPLETED ] && [ "$code" = 0:0 ]; } ||
  fail "job $AGAIN (gtrt.sbatch, resumed) ended $state with exit code ${code:-?}"
grep -q "resuming the run in $RUN (at v$UPDATES" "$TMP/work/main-$AGAIN.out" ||
  fail "job $AGAIN did not resume the run at v$UPDATES"
[ ! -e "$RUN/slurm-$AGAIN/sft.log" ] || fail "job $AGAIN ran an SFT warm start instead of resuming"
grep -q "resuming $RUN at v$UPDATES" "$RUN/slurm-$AGAIN/learner.log" ||
  fail "the learner of job $AGAIN did not resume at v$UPDATES"
[ -s "$RUN/checkpoints/policy-v$(printf %06d $MORE).safetensors" ] || fail "no checkpoint of update $MORE"
grep -q "policy-v$(printf %06d $MORE).safetensors" "$RUN/eval-final.json" ||
  fail "the final eval of job $AGAIN is not of v$MORE"
say "job $AGAIN resumed the run at v$UPDATES and took it to v$MORE ($((SECONDS - t_again)) s)"

T_CHECKS=$SECONDS
say "PASS: jobs $MAIN, $ADD and $AGAIN: SFT, $UPDATES updates with 1 teacher and 2+1 actors, final eval," \
    "resumed to $MORE, $([ $SECURE = 1 ] && echo "CURVE keys" || echo "insecure"); $((SECONDS - T0)) s in all"
