#!/usr/bin/env bash
# Run `deepsynthbody bench-gpu` on a lent GPU machine (the device tool), from the repository root there.
# The machine reaches no package index and one call carries 64 MiB, the working tree included. So, on one warm
# machine: the calls that `scripts/gpu-carry.py prepare` prints first copy its parts (onnxruntime-gpu and the
# service's dependencies the machine's image lacks, packed for its python3) into /tmp/carry; then this call
# carries one built ECG version, e.g. data/models/cardiovascular/ecg/pulse2pulse-ecg/2 (47 MiB), and the parts'
# checksums, .gpucarry/parts.sha256. It unpacks /tmp/carry, checks what python3 imports and that a GPU is there,
# then runs the bench. Arguments go to bench-gpu (e.g. --version 2).
set -euo pipefail
mkdir -p /tmp/site
if [ ! -d /tmp/site/onnxruntime ]; then
  sums=$PWD/.gpucarry/parts.sha256
  if ! (cd /tmp/carry && sha256sum --check --quiet "$sums"); then
    echo "/tmp/carry lacks a part or holds a cut one (was the machine given back between the calls?): copy the" \
      "parts again, then call this again, carrying .gpucarry/parts.sha256 too" >&2
    exit 1
  fi
  cat /tmp/carry/part.* | xz -d | tar -x -C /tmp/site
fi
site=$(python3 -c 'import site; print(site.getsitepackages()[0])')
export LD_LIBRARY_PATH=$(ls -d "$site"/nvidia/*/lib "$site"/nvidia/cu*/lib 2>/dev/null | tr '\n' ':')${LD_LIBRARY_PATH:-}
export PATH=/tmp/site/bin:$PATH PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 DSB_DATA_DIR=$PWD/data
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
python3 scripts/gpu-carry.py check
python3 -m workers.gpu_health
python3 -m deepsynthbody bench-gpu --json "${OUT:-/tmp}/bench-gpu.json" "$@"
