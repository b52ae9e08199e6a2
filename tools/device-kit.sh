# Sourced by the scripts that run on a lent GPU machine (device-run.sh, device-compare.sh): makes
# $out, the folder their logs and JSON go to ($OUT, default ./out), and loads the device kit's
# environment: gpu-env.sh from $MEGACL_GPUKIT, else shared/device, .gpukit/device or
# ../shared/device, the first that has one.
out=${OUT:-$PWD/out}
mkdir -p "$out"
kit=${MEGACL_GPUKIT:-}
for k in shared/device .gpukit/device ../shared/device; do
  [ -z "$kit" ] && [ -f "$k/gpu-env.sh" ] && kit=$k
done
if [ ! -f "$kit/gpu-env.sh" ]; then
  # the lent machine gets the working tree only: a checkout whose kit sits beside it, in
  # ../shared, must copy it into .gpukit/device (ignored) and carry that
  echo "device-kit.sh: no gpu-env.sh in ${MEGACL_GPUKIT:-shared/device, .gpukit/device or ../shared/device}" \
    "(from $PWD); copy the kit to .gpukit/device and carry it" >&2
  exit 1
fi
# shellcheck disable=SC1091
source "$kit/gpu-env.sh"
