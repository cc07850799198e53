# A GPU generation worker: CUDA 13 runtime + cuDNN 9, onnxruntime-gpu (built for CUDA 13) and CuPy. Scale out by running more of these
# on any host that reaches the same Redis and mounts the same results volume.
FROM nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 DSB_DATA_DIR=/data DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /srv
COPY pyproject.toml README.md ./
COPY app app
COPY workers workers
COPY model_store model_store
COPY deepsynthbody deepsynthbody
RUN pip install '.[gpu]' && pip uninstall -y onnxruntime && pip install --force-reinstall --no-deps "onnxruntime-gpu>=1.31"
VOLUME /data
# Healthy while the container has a GPU it can use (onnxruntime-gpu lists its CUDA provider even without one)
HEALTHCHECK --interval=15s --timeout=5s --retries=3 CMD python -m workers.gpu_health
CMD ["deepsynthbody", "worker"]
