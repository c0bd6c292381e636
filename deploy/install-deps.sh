#!/usr/bin/env bash
# Install every Debian package gtrt needs to build, test and run.
# Idempotent: when everything is present it prints nothing and exits 0.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config clang
  libzmq3-dev libprotobuf-c-dev protobuf-c-compiler libuv1-dev
  libopenblas-dev libcriterion-dev libinih-dev libcjson-dev libssl-dev libpng-dev
  python3-torch python3-numpy python3-protobuf python3-zmq
  # tests/cluster: a single-node Slurm with munge (test_slurm.sh starts its own
  # daemons from a temporary directory; on a host running systemd the packages'
  # own services may start too and fail for want of /etc/slurm/slurm.conf,
  # which is harmless) and the manifest checker (test_k8s_manifests.sh)
  slurmctld slurmd slurm-client munge python3-yaml
  # tests/cluster/test_netns.sh: network namespaces, veth pairs, a bridge
  iproute2
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
