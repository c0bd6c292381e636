#!/usr/bin/env bash
# The deployment files agree with each other and with gtrt: the Kubernetes
# example (deploy/k8s) and the systemd units (deploy/systemd) pass
# tests/tools/check_manifests.py (kinds, one image, ports of the configuration,
# containers and Services, known config keys, Secret mounts behind the
# security.* paths, unit keys, gtrt subcommands, systemd-analyze verify where
# available), and the Slurm scripts parse. Then the checker is shown to fail:
# each of a list of deliberate breakages, made in a scratch copy, must make it
# exit 1 with a message naming the fault. Needs python3-yaml
# (deploy/install-deps.sh). GTRT_BIN: the gtrt executable; GTRT_SOURCE_DIR:
# the repository.
set -uo pipefail

T0=$SECONDS
say() { printf 'test_k8s_manifests: %s\n' "$*"; }
fail() { say "FAIL: $*" >&2; exit 1; }

SRC=${GTRT_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
GTRT_BIN=${GTRT_BIN:-$SRC/build/gtrt}
PY=/usr/bin/python3
CHECK=$SRC/tests/tools/check_manifests.py
[ -x "$GTRT_BIN" ] || fail "GTRT_BIN=$GTRT_BIN is not an executable (build gtrt first)"
[ -x "$PY" ] || fail "no $PY"
$PY -c 'import yaml' 2>/dev/null || fail "python3-yaml is missing: install it with deploy/install-deps.sh"
for d in deploy/k8s deploy/systemd deploy/slurm; do
  [ -d "$SRC/$d" ] || fail "no $SRC/$d"
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gtrt-manifests.XXXXXX") || fail "mktemp"
trap 'rm -rf "$TMP"' EXIT

# ==== the files as they are ====

for f in "$SRC"/deploy/slurm/*.sbatch "$SRC"/deploy/systemd/gtrt-learner-start; do
  bash -n "$f" || fail "$f does not parse"
done
if command -v shellcheck >/dev/null; then
  shellcheck -s bash "$SRC"/deploy/slurm/*.sbatch "$SRC"/deploy/systemd/gtrt-learner-start ||
    fail "shellcheck found problems in the Slurm or systemd scripts"
fi
$PY "$CHECK" --gtrt "$GTRT_BIN" --k8s "$SRC/deploy/k8s" --systemd "$SRC/deploy/systemd" ||
  fail "the deployment files have problems (above)"

# ==== the checker must catch these ====

n=0
# breaks NAME FILE SED-EXPR EXPECTED: in a copy, FILE (under deploy/) edited
# by SED-EXPR must make the checker fail with EXPECTED in its output
breaks() {
  local name=$1 file=$2 expr=$3 want=$4 dir=$TMP/case-$n out rc
  n=$((n + 1))
  local part=${file%%/*} # only the part the edit is in: k8s or systemd
  { mkdir -p "$dir" && cp -r "$SRC/deploy/$part" "$dir/"; } || fail "copy"
  sed -i -e "$expr" "$dir/$file"
  cmp -s "$SRC/deploy/$file" "$dir/$file" && fail "self-check '$name': the edit '$expr' changed nothing in $file"
  out=$($PY "$CHECK" --gtrt "$GTRT_BIN" "--$part" "$dir/$part" 2>&1)
  rc=$?
  if [ $rc != 1 ] || ! grep -qF -- "$want" <<< "$out"; then
    printf '%s\n' "$out" >&2
    fail "self-check '$name': the checker exited $rc without '$want'"
  fi
  say "caught: $name"
}
breaks "a teacher container port that is not teacher.bind's" k8s/teacher.yaml \
  's/containerPort: 5556/containerPort: 5599/' "teacher.bind binds port 5556"
breaks "a config key gtrt does not know" k8s/configmap.yaml \
  's/^    updates = /    updatez = /' "unknown key ppo.updatez"
breaks "a learner bind port no container port matches" k8s/configmap.yaml \
  's|^    bind = tcp://\*:5555|    bind = tcp://*:5565|' "learner.bind binds port 5565"
breaks "a config value of the wrong type" k8s/configmap.yaml \
  's/^    num_steps = 256/    num_steps = many/' "does not load"
breaks "keys mounted where security.* does not look" k8s/actor.yaml \
  's|mountPath: /etc/gtrt/keys|mountPath: /etc/gtrt/secret|' "security.server_key = /etc/gtrt/keys/server.pub is not a file of a mounted Secret"
breaks "the server's secret key in actor pods" k8s/actor.yaml \
  's/secretName: gtrt-actor-keys/secretName: gtrt-server-keys/' "server's secret key is mounted into actor pods"
breaks "world-readable keys" k8s/teacher.yaml \
  's/defaultMode: 0440/defaultMode: 0444/' "others may read the keys"
breaks "two images" k8s/actor.yaml \
  's/image: gtrt:latest/image: gtrt:v2/' "do not all run one image"
breaks "a Service port that leads nowhere" k8s/learner.yaml \
  's/      port: 5557/      port: 5558/' "learner.publish_connect port 5557 leads to learner port None"
breaks "an advertised teacher port that is not the bound one" k8s/teacher.yaml \
  's/(POD_IP):5556/(POD_IP):5559/' "does not name its bind port"
# shellcheck disable=SC2016 # a sed expression, not a shell one
breaks "a YAML syntax error" k8s/teacher.yaml \
  '$a\  - : [' "does not parse as YAML"
breaks "a manifest the kustomization leaves out" k8s/kustomization.yaml \
  '/  - actor.yaml/d' "actor.yaml: not listed"
breaks "a unit running no gtrt subcommand" systemd/gtrt-actor@.service \
  's|/usr/local/bin/gtrt actor|/usr/local/bin/gtrt actr|' "does not run a gtrt subcommand"
breaks "a unit that is not restarted" systemd/gtrt-teacher@.service \
  '/^Restart=on-failure/d' "Restart=(unset)"
breaks "a unit without its hardening" systemd/gtrt-learner.service \
  's/^ProtectSystem=strict/ProtectSystem=full/' "ProtectSystem=full, want strict"
breaks "an example .ini key gtrt does not know" systemd/actor.ini \
  's/^envs = 8/envz = 8/' "unknown key actor.envz"
if command -v systemd-analyze >/dev/null; then
  breaks "a directive systemd does not know" systemd/gtrt-actor@.service \
    's/^KillMode=mixed/KillMode=mixed\nRestartForever=yes/' "Unknown key"
else
  say "systemd-analyze not installed: its self-check is left out"
fi

say "PASS: the deployment files check clean and $n deliberate breakages were caught; $((SECONDS - T0)) s"
