#!/usr/bin/env bash
# Installs what megacl needs on Debian 12 when it is missing (as root, or through sudo), then
# configures and builds into build/ (or $MEGACL_BUILD_DIR). Waits for the package manager's
# lock rather than failing where another one is at work.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(build-essential cmake pkg-config ocl-icd-opencl-dev opencl-c-headers pocl-opencl-icd
          clinfo libclblast-dev libcriterion-dev libjson-c-dev libxxhash-dev libzstd-dev
          clang-14 libclang-rt-14-dev clang-15 rocm-device-libs)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
# apt-get that waits while another package manager (unattended-upgrades, a bootstrap running
# beside this one) holds its lock, instead of failing at once: dpkg waits for its own lock
# (DPkg::Lock::Timeout), and a failure on a lock, the package lists' lock included, which
# apt-get update does not wait for, is retried until MEGACL_APT_WAIT seconds have passed.
apt_wait=${MEGACL_APT_WAIT:-900}
apt_get() {
  local deadline=$((SECONDS + apt_wait)) log
  log=$(mktemp)
  until DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=60 "$@" 2>"$log"; do
    if ! grep -qE "Could not get lock|Unable to acquire|Unable to lock" "$log" || [ $SECONDS -ge $deadline ]; then
      cat "$log" >&2
      rm -f "$log"
      return 1
    fi
    echo "bootstrap: $(grep -oE '/var/[a-z/_-]*lock[a-z-]*' "$log" | head -1) is held by another package manager;" \
      "waiting ($((deadline - SECONDS)) s left of MEGACL_APT_WAIT=$apt_wait)" >&2
    sleep 5
  done
  rm -f "$log"
}
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  apt_get update -qq
  apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
build=${MEGACL_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release ${MEGACL_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null
echo "bootstrap: built $build/tools/megacl"
