# The HTTP API (no onnxruntime sessions run here). Also builds missing models at start (docker-compose.yml does it
# once, in its `models` service, before the API and the workers start), so it carries the export extra (torch CPU
# build) once; workers then read the shared store.
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 DSB_DATA_DIR=/data
WORKDIR /srv
COPY pyproject.toml README.md ./
COPY app app
COPY workers workers
COPY model_store model_store
COPY deepsynthbody deepsynthbody
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu '.[export]'
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
CMD ["sh", "-c", "deepsynthbody models build && deepsynthbody api --host 0.0.0.0 --port 8000"]
