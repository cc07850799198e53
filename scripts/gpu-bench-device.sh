#!/usr/bin/env bash
# Run `deepsynthbody bench-gpu` on a lent GPU machine (the device tool), from the repository root there.
# Before it, earlier calls on the same warm machine copied the onnxruntime-gpu chunks that
# ort-gpu-chunks.sh (a tool of the developers', not of this repository) prepares into /tmp/ortc; this call carries .whl (the service's
# pure-Python dependencies the machine lacks, as cp312 wheels) and one built ECG version, e.g.
# data/models/cardiovascular/ecg/pulse2pulse-ecg/2 (48 MB; both versions exceed the 64 MiB a call carries).
set -euo pipefail
mkdir -p /tmp/ortsite /tmp/site
[ -d /tmp/ortsite/onnxruntime ] || cat /tmp/ortc/part* | xz -d | tar -x -C /tmp/ortsite
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
site=$(python3 -c 'import site; print(site.getsitepackages()[0])')
export LD_LIBRARY_PATH=$(ls -d "$site"/nvidia/*/lib "$site"/nvidia/cu*/lib 2>/dev/null | tr '\n' ':')${LD_LIBRARY_PATH:-}
export PYTHONPATH=/tmp/ortsite:/tmp/site:$PWD PYTHONUNBUFFERED=1 DSB_DATA_DIR=$PWD/data
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
python3 -m deepsynthbody bench-gpu --json "${OUT:-/tmp}/bench-gpu.json" "$@"
