"""Make ECGs with the DeepSynthBody service and read them into a NumPy array.

    DSB_URL=http://127.0.0.1:8000 [DSB_API_KEY=...] python examples/python/ecg_numpy.py [NUM_SAMPLES]

Submits a request, follows its progress over Server-Sent Events (GET /jobs/{id}/events), downloads the archive
and loads `ecgs.npy` into an int16 array of shape (N, 5000, leads), in microvolts. Needs httpx and numpy.
(The `deepsynthbody generate` command does all this with resumable downloads and sha256 checks.)
"""

import io
import json
import os
import sys
import zipfile

import httpx
import numpy as np

url = os.environ.get("DSB_URL", "http://127.0.0.1:8000")
key = os.environ.get("DSB_API_KEY")
count = int(sys.argv[1]) if len(sys.argv) > 1 else 20

with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=60) as dsb:
    submitted = dsb.post("/generate/cardiovascular/ecg", json={"num_samples": count, "seed": 7, "format": "npy"})
    submitted.raise_for_status()
    job = submitted.json()
    print(f"job {job['job_id']} queued", file=sys.stderr)

    # Server-Sent Events: an "event:" line and a "data:" JSON line per message, until the "end" event
    with dsb.stream("GET", f"/jobs/{job['job_id']}/events", timeout=None) as events:
        event = None
        for line in events.iter_lines():
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                data = json.loads(line.removeprefix("data:"))
                print(f"{event}: {data['status']} {data['progress']['done']}/{data['progress']['total']}", file=sys.stderr)
                if event == "end":
                    job = data
    if job["status"] != "finished":
        sys.exit(f"job {job['job_id']} {job['status']}: {job.get('error')}")

    archive = dsb.get(job["links"]["result"])
    archive.raise_for_status()

with zipfile.ZipFile(io.BytesIO(archive.content)) as zf:
    ecgs = np.load(io.BytesIO(zf.read("ecgs.npy")))  # (N, 5000, leads) int16, microvolts
    leads = json.loads(zf.read("manifest.json"))["output"]["leads"]

print(f"{ecgs.shape[0]} ECGs, {ecgs.shape[1]} samples at 500 Hz, leads {', '.join(leads)}", file=sys.stderr)
print(json.dumps({"job_id": job["job_id"], "shape": list(ecgs.shape), "dtype": str(ecgs.dtype),
                  "first_row": ecgs[0, 0].tolist()}))
