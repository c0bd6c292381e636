#!/usr/bin/env bash
# A multi-host run on one machine: the learner, a teacher and two actors each
# in its own Linux network namespace, joined by a bridge (itself in a
# namespace, so the host's network is never touched), talking real TCP to
# each other's addresses. A short turbo-kl training runs while we
#   1. pull one actor's cable (its veth on the bridge goes down) until both
#      ends have given up on each other, and plug it back: the actor must
#      register again and resend what was not acknowledged (the other actor
#      is frozen first, so that there is something to resend);
#   2. SIGKILL the teacher: the run goes on, its steps trained as plain PPO;
#      start it again: guidance resumes, from a recent merged version;
# then the learner is stopped (SIGTERM) and resumed with a budget of a few
# more updates, so that the run ends on its own and everything comes to
# rest, and the books must balance exactly: every step each actor sent is
# acknowledged or still held, and each actor's acknowledged steps are what
# the learner settled for it (learned, stale or invalid). Everything we made
# is torn down on exit, failure included. Needs root and iproute2.
#
# Environment: GTRT_BIN (the gtrt binary), GTRT_SOURCE_DIR (the repository),
# GTRT_NETNS_KEEP=1 to keep the run directory (logs, metrics) afterwards.
set -uo pipefail

T_START=$(date +%s%N)
GTRT_SOURCE_DIR=${GTRT_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
GTRT_BIN=${GTRT_BIN:-$GTRT_SOURCE_DIR/build/gtrt}
HELPER=$GTRT_SOURCE_DIR/tests/tools/netns_check.py # readers and checks (Python)
check() { /usr/bin/python3 "$HELPER" "$@"; }
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} # 4 services share 2 cores

# ==== the run's shape ====

# The tiny model on NumberLine from a 2-second SFT warm start: answers of
# ~18 tokens, all well-formed, so a turn costs milliseconds.
NUM_STEPS=64
# One actor alone cannot fill an update (48 < 64 steps unacknowledged): the
# learner needs the steps of both, so it stalls while one is away (used
# below) and goes on only once both are back.
MAX_UNACKED=48
HEARTBEAT_MS=200 # x net.liveness (3): a peer silent for 0.6 s is gone
# How many updates the disturbances take depends on how fast the machine
# trains (~10 a second here), so no budget fixed in advance fits: the
# learner runs without one until we are done, then is stopped and resumed
# with FINAL_UPDATES more to end the run.
FINAL_UPDATES=3
WAIT_S=60 # the longest wait for any one thing; only there against hangs

# Names of this run: other runs (and other jobs) may share the host.
TAG=gtrt-$$
NS_BR=$TAG-br
ROLES=(learner teacher actor1 actor2)
SUBNET=10.77.$(($$ % 250 + 1))
declare -A NS ADDR PID
i=1
for r in "${ROLES[@]}"; do
    NS[$r]=$TAG-$r
    ADDR[$r]=$SUBNET.$i
    i=$((i + 1))
done
L=${ADDR[learner]}
T=${ADDR[teacher]}
DIR=
RUN=

# ==== reporting ====

elapsed() { awk -v ns=$(($(date +%s%N) - T_START)) 'BEGIN { printf "%.1f s", ns / 1e9 }'; }
say() { printf '[netns %7s] %s\n' "$(elapsed)" "$*"; }

# The end of every log: what a failure needs to be understood.
show_logs() {
    [ -n "$DIR" ] || return
    local f
    for f in "$DIR"/*.log; do
        [ -f "$f" ] || continue
        echo "---- last lines of $(basename "$f") ----"
        tail -n 15 "$f"
    done
}

fail() {
    say "FAIL: $*"
    show_logs
    echo "FAIL test_netns after $(elapsed): $*"
    exit 1
}

# ==== teardown: on every exit ====

# Everything runs in our namespaces: killing what runs in them and deleting
# them takes the processes, veths and the bridge with them. The host's own
# namespace was never changed.
teardown() {
    local r p ns
    for r in "${!PID[@]}"; do
        p=${PID[$r]}
        [ -n "$p" ] && kill -KILL "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    for ns in "${NS[@]}" "$NS_BR"; do
        [ -e "/run/netns/$ns" ] || continue
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null || echo "test_netns: could not delete namespace $ns" >&2
    done
    if [ -n "$DIR" ] && [ -d "$DIR" ]; then
        if [ "${GTRT_NETNS_KEEP:-0}" = 1 ]; then
            echo "run directory kept: $DIR"
        else
            rm -rf "$DIR"
        fi
    fi
}
trap teardown EXIT
trap 'echo "FAIL test_netns: interrupted"; exit 130' INT TERM

# ==== preconditions ====

preconditions() {
    if ! command -v ip >/dev/null || ! ip -V >/dev/null 2>&1; then
        fail "iproute2 (the ip command) is not installed: run deploy/install-deps.sh"
    fi
    [ "$(id -u)" = 0 ] || fail "network namespaces need root"
    [ -x "$GTRT_BIN" ] || fail "GTRT_BIN=$GTRT_BIN is not an executable"
    [ -x /usr/bin/python3 ] || fail "/usr/bin/python3 is missing: run deploy/install-deps.sh"
    DIR=$(mktemp -d /tmp/gtrt-netns-XXXXXX) || fail "cannot create a temporary directory"
    RUN=$DIR/runs/netns # run.out_dir/run.name: metrics.jsonl, ingest-state.txt, checkpoints/
}

# ==== the network ====

# A bridge in its own namespace and, per role, a namespace whose eth0 is one
# end of a veth pair plugged into the bridge: one host per role, as far as
# the services can tell.
net_build() {
    ip netns add "$NS_BR" || fail "cannot create network namespace $NS_BR"
    ip -n "$NS_BR" link set lo up
    ip -n "$NS_BR" link add br0 type bridge || fail "cannot create a bridge (no bridge module?)"
    ip -n "$NS_BR" link set br0 up
    local r
    for r in "${ROLES[@]}"; do
        ip netns add "${NS[$r]}" || fail "cannot create network namespace ${NS[$r]}"
        ip -n "${NS[$r]}" link set lo up
        # Made inside the bridge's namespace with the other end moved straight
        # into the role's: no interface ever appears in the host's namespace.
        ip -n "$NS_BR" link add "v-$r" type veth peer name eth0 netns "${NS[$r]}" ||
            fail "cannot create the veth pair of $r"
        ip -n "$NS_BR" link set "v-$r" master br0 up
        ip -n "${NS[$r]}" addr add "${ADDR[$r]}/24" dev eth0
        ip -n "${NS[$r]}" link set eth0 up
    done
}

# Every host reaches the two that the others connect to (the learner and
# the teacher) over TCP, before any service starts.
net_check() {
    local dst r lp
    for dst in learner teacher; do
        ip netns exec "${NS[$dst]}" /usr/bin/python3 "$HELPER" listen "${ADDR[$dst]}" 7000 $WAIT_S &
        lp=$!
        for r in "${ROLES[@]}"; do
            [ "$r" = "$dst" ] && continue
            ip netns exec "${NS[$r]}" /usr/bin/python3 "$HELPER" connect "${ADDR[$dst]}" 7000 10 >/dev/null ||
                { kill "$lp"; fail "$r cannot reach $dst at ${ADDR[$dst]} over the bridge"; }
        done
        kill "$lp" 2>/dev/null
        wait "$lp" 2>/dev/null
    done
}

# Pull (down) or plug (up) a role's cable: its veth end on the bridge.
net_link() { ip -n "$NS_BR" link set "v-$1" "$2" || fail "cannot set v-$1 $2"; }

# ==== the services ====

# What every service shares. Binding non-loopback addresses without CURVE
# keys needs security.insecure.
COMMON=(
    --set run.mode=turbo-kl --set run.seed=1 --set run.name=netns
    --set model.preset=tiny --set env.name=numberline
    --set "ppo.num_steps=$NUM_STEPS" --set ppo.minibatch=32 --set ppo.epochs=1
    --set actor.envs=4 --set "actor.max_unacked_steps=$MAX_UNACKED"
    --set "net.heartbeat_ms=$HEARTBEAT_MS" --set net.liveness=3
    --set guide.teacher_timeout_ms=500 --set guide.teacher_attempts=2
    --set "learner.connect=tcp://$L:5555" --set "learner.publish_connect=tcp://$L:5557"
    --set security.insecure=true --set log.level=info
)

# start ROLE LOG ARGS...: gtrt ARGS in ROLE's namespace, in the background.
# `ip netns exec` execs the command, so the pid is gtrt's own.
start() {
    local r=$1 log=$2
    shift 2
    ip netns exec "${NS[$r]}" "$GTRT_BIN" "$@" >>"$DIR/$log" 2>&1 &
    PID[$r]=$!
}

start_learner() {
    start learner learner.log learner "${COMMON[@]}" --set ppo.updates=0 \
        --set run.out_dir="$DIR/runs" --set ppo.init_checkpoint="$DIR/init.safetensors" \
        --set "learner.bind=tcp://$L:5555" --set "learner.publish_bind=tcp://$L:5557" \
        --set "metrics.prometheus_bind=$L:9464"
}

# The same run from its directory (its config.ini), with a budget.
resume_learner() {
    start learner learner-resumed.log learner --resume "$RUN" --set ppo.updates="$1"
}

# The teacher advertises its own address: the learner hands it to the
# actors, who then ask the teacher directly.
start_teacher() {
    start teacher teacher.log teacher "${COMMON[@]}" --set teacher.id=teacher-1 \
        --set "teacher.bind=tcp://$T:5556" --set "teacher.advertise=tcp://$T:5556"
}

start_actor() {
    start "$1" "$1.log" actor "${COMMON[@]}" --set actor.id="$1" \
        --set actor.status_bind="tcp://${ADDR[$1]}:5558"
}

# stop ROLE: SIGTERM, and it must exit 0 (services stop cleanly).
stop() {
    local rc end=$((SECONDS + WAIT_S))
    kill -TERM "${PID[$1]}" 2>/dev/null
    while alive "$1"; do # bash reaps its children: a stopped one is gone
        [ $SECONDS -ge $end ] && fail "$1 did not stop within ${WAIT_S}s of SIGTERM"
        sleep 0.1
    done
    wait "${PID[$1]}"
    rc=$?
    PID[$1]=
    [ $rc = 0 ] || fail "$1 exited $rc on SIGTERM"
}

alive() { [ -n "${PID[$1]:-}" ] && kill -0 "${PID[$1]}" 2>/dev/null; }

# ==== asking the services ====

# status_of WHO [FROM]: `gtrt status --json` of the learner, the teacher or
# an actor, asked from FROM's host (default: the learner's, over the
# bridge; an actor's own host reaches it while its cable is out); empty if
# it does not answer.
status_of() {
    local ep flag=--learner
    case $1 in
    learner) ep=tcp://$L:5555 ;;
    teacher) ep=tcp://$T:5556 flag=--teacher ;;
    *) ep=tcp://${ADDR[$1]}:5558 ;;
    esac
    ip netns exec "${NS[${2:-learner}]}" "$GTRT_BIN" status --json --timeout-ms 1000 \
        --set net.request_retries=1 "$flag" "$ep" 2>/dev/null
}

# json_counters NAME...: from the one-line `gtrt status --json` on stdin,
# those counters, space-separated ('-' for one it does not report; all '-'
# when there was no answer). Counters are a flat object of numbers, so grep
# does, and the polls below stay cheap on a busy 2-core machine.
json_counters() {
    local c n v out=()
    c=$(grep -o '"counters":{[^}]*}')
    for n; do
        v=$(grep -o "\"$n\":[0-9]*" <<<"$c")
        v=${v#*:}
        out+=("${v:--}")
    done
    echo "${out[*]}"
}

# counters WHO NAME...: its status counters, from one query.
counters() {
    local who=$1
    shift
    status_of "$who" | json_counters "$@"
}

# An actor's counter, asked inside its own namespace.
own_counter() { status_of "$1" "$1" | json_counters "$2"; }

# peers_alive ID...: per id, 1 if the learner lists it alive, else 0.
peers_alive() {
    local st id out=()
    st=$(status_of learner)
    for id; do
        grep -o "{\"id\":\"$id\"[^}]*}" <<<"$st" | grep -q '"alive":true' && out+=(1) || out+=(0)
    done
    echo "${out[*]}"
}

# num X: X if it is a number, else 0.
num() { case $1 in '' | *[!0-9]*) echo 0 ;; *) echo "$1" ;; esac; }

# sum WHO NAME...: the sum of those counters.
sum() {
    local who=$1 v t=0
    shift
    for v in $(counters "$who" "$@"); do t=$((t + $(num "$v"))); done
    echo $t
}

version() { sum learner policy_version; }

# "guided N unguided M last V updates U": the U updates after version $1 in
# the run's metrics.jsonl, N of which had steps with teacher logprobs
# (guide/guided_share > 0) and M steps without (share < 1).
guidance_after() { check guidance "$RUN" "$1"; }

# wait_for WHAT CMD...: poll CMD until it succeeds; fail after WAIT_S saying
# what was waited for, or at once if a service died meanwhile.
wait_for() {
    local what=$1
    shift
    local end=$((SECONDS + WAIT_S)) r
    while ! "$@"; do
        for r in "${ROLES[@]}"; do
            [ -n "${PID[$r]:-}" ] && ! alive "$r" && fail "$r died while waiting for $what"
        done
        [ $SECONDS -ge $end ] && fail "timed out after ${WAIT_S}s waiting for $what"
        sleep 0.2
    done
}

# ==== conditions waited for ====

at_version() { [ "$(version)" -ge "$1" ]; }
sum_above() { [ "$(sum "$1" "${@:3}")" -gt "$2" ]; } # sum_above WHO N NAME...
guided_since() { local g; read -r _ g _ <<<"$(guidance_after "$1")"; [ "$g" -gt 0 ]; }
unguided_since() { local u; read -r _ _ _ u _ <<<"$(guidance_after "$1")"; [ "$u" -gt 0 ]; }
# learner_sees ID... STATES: the learner lists those peers alive (1) or gone
# (0), e.g. learner_sees actor1 teacher-1 "1 0".
learner_sees() { [ "$(peers_alive "${@:1:$#-1}")" = "${!#}" ]; }
# An actor's own view of the learner: welcomed (1) or not (0).
actor_welcomed() { [ "$(own_counter "$1" learner_welcomed)" = "$2" ]; }
# The learner cannot update (fewer than NUM_STEPS steps buffered, no new
# version) while actor1 waits for acknowledgements of all the steps it may
# hold: the same over two looks half a second apart.
learner_stalled() {
    local a b buffered waiting
    a="$(counters learner policy_version steps_buffered) $(counters actor1 waiting_for_acks)"
    sleep 0.5
    b="$(counters learner policy_version steps_buffered) $(counters actor1 waiting_for_acks)"
    read -r _ buffered waiting <<<"$a"
    [ "$a" = "$b" ] && [ "$waiting" = 1 ] && [ "$(num "$buffered")" -lt $NUM_STEPS ]
}
teacher_serving() {
    local has v
    read -r has v <<<"$(counters teacher has_model teacher_version)"
    [ "$has" = 1 ] && [ "$(num "$v")" -ge "$1" ]
}
actors_at_rest() { [ "$(sum actor1 waiting_for_acks)$(sum actor2 waiting_for_acks)" = 11 ]; }

# ==== the phases ====

warm_start() {
    say "warm start: gtrt sft (tiny, numberline)"
    "$GTRT_BIN" sft --set env.name=numberline --set model.preset=tiny --set sft.steps=200 \
        --set sft.lr=3e-3 --set sft.samples=1024 --set sft.wrong_action=0.5 \
        --set sft.eval_episodes=0 -o "$DIR/init.safetensors" >"$DIR/sft.log" 2>&1 ||
        fail "gtrt sft failed"
}

start_all() {
    say "starting learner ($L), teacher ($T), actor1 (${ADDR[actor1]}), actor2 (${ADDR[actor2]})"
    start_learner
    start_teacher
    start_actor actor1
    start_actor actor2
    wait_for "both actors and the teacher to register with the learner" \
        learner_sees actor1 actor2 teacher-1 "1 1 1"
    # Actors that count guided steps are actors that ask the teacher (they
    # report it once they play).
    wait_for "actor1 to send steps" sum_above actor1 0 steps_sent
    case " $(counters actor1 steps_teacher_guided steps_teacher_failed) " in
    *" - "*) fail "actor1 reports no steps_teacher_guided / steps_teacher_failed: this gtrt's" \
        "actors do not ask teachers in run.mode=turbo-kl" ;;
    esac
    wait_for "an update guided by the teacher (guide/guided_share > 0 in metrics.jsonl)" \
        guided_since 0
    say "all registered; updates so far: $(guidance_after 0)"
}

# Pull actor1's cable until both ends have given up on each other (so for
# longer than the liveness: shown, not slept), plug it back, and actor1 must
# resend what the learner had not acknowledged.
#
# Cut alone, actor1 may hold nothing unacknowledged by then (the learner
# learns its steps meanwhile and the acks wait in TCP), and the outage would
# prove nothing. So actor2 is frozen first (SIGSTOP): the learner, which
# needs the steps of both, stalls with actor1's steps buffered and
# unacknowledged, and they stay so until the learner can update again,
# after actor1 has come back. (Freezing, not a second cut: a long cut leaves
# TCP in retransmission backoff for many seconds after it ends.)
link_outage() {
    local before v sent settled
    before=$(sum actor1 batches_resent batches_retried)
    say "actor2 frozen (SIGSTOP) at v$(version)"
    kill -STOP "${PID[actor2]}"
    wait_for "the learner to stall, actor1 waiting for acknowledgements" learner_stalled
    v=$(version)
    say "the learner stalled at v$v; link down: actor1 (its veth on the bridge)"
    net_link actor1 down
    wait_for "the learner to declare both actors gone" learner_sees actor1 actor2 "0 0"
    wait_for "actor1 to declare the learner gone" actor_welcomed actor1 0
    # What actor1 sent that the learner has not settled (its record is on
    # disk before any ack leaves): actor1 must hold it unacknowledged when
    # it is back, since the stalled learner cannot settle it meanwhile.
    sent=$(own_counter actor1 steps_sent)
    settled=$(check record_settled "$RUN" actor1) ||
        fail "cannot read the learner's record: $settled"
    HELD=$(($(num "$sent") - settled))
    [ "$HELD" -gt 0 ] || fail "actor1 sent $sent steps and the learner settled $settled:" \
        "nothing is left to resend, the outage would prove nothing"
    say "both ends gave up on each other (learner at v$(version)); actor1 sent $HELD steps" \
        "the learner has not settled; link up"
    net_link actor1 up
    local up_ns; up_ns=$(date +%s%N)
    wait_for "actor1 to register again" eval 'learner_sees actor1 1 && actor_welcomed actor1 1'
    say "actor1 registered again $(awk -v ns=$(($(date +%s%N) - up_ns)) \
        'BEGIN { printf "%.1f s", ns / 1e9 }') after its link came back"
    wait_for "actor1 to resend its unacknowledged batches" \
        sum_above actor1 "$before" batches_resent batches_retried
    RESENT=$(($(sum actor1 batches_resent batches_retried) - before))
    say "actor1 is back and resent $RESENT batches; actor2 thawed (SIGCONT)"
    kill -CONT "${PID[actor2]}"
    wait_for "actor2 to register again" learner_sees actor2 1
    wait_for "updates to go on after the outage" at_version $((v + 2))
    say "updates go on: v$(version)"
}

# SIGKILL the teacher: the run must go on, its steps trained as plain PPO;
# start it again: guidance must come back, from a recent merged version.
teacher_restart() {
    local v vr f1 f2 g
    f1=$(sum actor1 steps_teacher_failed)
    f2=$(sum actor2 steps_teacher_failed)
    v=$(version)
    say "SIGKILL teacher at v$v"
    kill -KILL "${PID[teacher]}"
    wait "${PID[teacher]}" 2>/dev/null
    PID[teacher]=
    wait_for "the learner to declare the teacher gone" learner_sees teacher-1 0
    wait_for "an update after v$v that learned steps without guidance" unguided_since "$v"
    wait_for "actor1 to count steps without a teacher" sum_above actor1 "$f1" steps_teacher_failed
    wait_for "actor2 to count steps without a teacher" sum_above actor2 "$f2" steps_teacher_failed
    wait_for "updates to go on without the teacher" at_version $((v + 2))
    vr=$(version)
    PLAIN=$(($(sum actor1 steps_teacher_failed) + $(sum actor2 steps_teacher_failed) - f1 - f2))
    OUTAGE="v$v-v$vr"
    say "the run went on to v$vr without a teacher ($PLAIN steps as plain PPO); starting it again"
    start_teacher
    wait_for "the learner to list the restarted teacher" learner_sees teacher-1 1
    wait_for "the restarted teacher to serve a merge of v$vr or later" teacher_serving "$vr"
    wait_for "an update after v$vr guided again (guide/guided_share > 0)" guided_since "$vr"
    g=$(sum actor1 steps_teacher_guided)
    wait_for "actor1 to count guided steps again" sum_above actor1 "$g" steps_teacher_guided
    g=$(sum actor2 steps_teacher_guided)
    wait_for "actor2 to count guided steps again" sum_above actor2 "$g" steps_teacher_guided
    SERVES=$(sum teacher teacher_version)
    say "guidance is back: the teacher serves its merge up to v$SERVES;" \
        "after v$vr: $(guidance_after "$vr")"
}

# Stop the learner (SIGTERM: it finishes the update in flight, records it
# and exits 0), resume it with a budget of FINAL_UPDATES more and let it
# spend it; once both actors wait for acknowledgements that will not come
# (the learner is done), nothing moves and the books must balance exactly.
finish_run() {
    local v tries=0 out
    stop learner
    v=$(check record_version "$RUN") || fail "no readable record after the learner stopped: $v"
    FINAL=$((v + FINAL_UPDATES))
    say "learner stopped cleanly at v$v; resumed with a budget of v$FINAL"
    resume_learner "$FINAL"
    wait_for "the learner to reach its budget of v$FINAL" at_version "$FINAL"
    wait_for "both actors to come to rest (waiting for acknowledgements)" actors_at_rest
    while :; do
        status_of learner >"$DIR/learner.json"
        status_of actor1 >"$DIR/actor1.json"
        status_of actor2 >"$DIR/actor2.json"
        ip netns exec "${NS[learner]}" /usr/bin/python3 "$HELPER" prom "http://$L:9464/metrics" >"$DIR/prom.json"
        out=$(check books "$RUN" "$DIR/learner.json" "$DIR/prom.json" \
            actor1="$DIR/actor1.json" actor2="$DIR/actor2.json") && break
        # The last acks may still be on their way: look again, a few times.
        tries=$((tries + 1))
        [ $tries -ge 20 ] && fail "the books do not balance: $out"
        sleep 0.5
    done
    BOOKS=$(head -n 1 <<<"$out")
    tail -n +2 <<<"$out" | while read -r line; do say "books: $line"; done
    [ "$(version)" = "$FINAL" ] || fail "the learner went past its budget: v$(version) > v$FINAL"
}

main() {
    preconditions
    say "network: bridge in $NS_BR; hosts $SUBNET.1-4 in ${NS[learner]} .. ${NS[actor2]}"
    net_build
    net_check
    say "every host reaches the learner and the teacher over TCP"
    warm_start
    start_all
    link_outage
    teacher_restart
    finish_run
    local guided total
    read -r _ guided _ _ _ _ _ total <<<"$(guidance_after 0)"
    stop actor1
    stop actor2
    stop teacher
    stop learner
    echo "PASS test_netns in $(elapsed): turbo-kl over TCP between 4 namespaces, $BOOKS;" \
        "actor1 cut off with $HELD steps unsettled, resent $RESENT batches;" \
        "teacher killed ($OUTAGE: $PLAIN steps as plain PPO) and back serving v$SERVES;" \
        "$guided of $total updates had guided steps"
}

main "$@"
