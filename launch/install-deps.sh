#!/usr/bin/env bash
# Installs every build, test and corpus dependency of zerotrain from Debian packages.
# Idempotent: packages already present are skipped by apt-get; safe to run on every invocation.
# --bench adds what tests/bench/vs_pytorch.sh compares against (python3-torch, about 400 MB).
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git python3
  libopenmpi-dev openmpi-bin
  libhdf5-dev hdf5-tools
  libboost-program-options-dev
  libopenblas-openmp-dev
  libgtest-dev libgmock-dev
  nlohmann-json3-dev
  fortunes fortunes-zh
  slurm-wlm munge iproute2
  clang libclang-rt-dev libomp-dev
)
if [[ ${1:-} == --bench ]]; then PKGS+=(python3-torch); fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
