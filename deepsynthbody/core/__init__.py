"""The ground floor every part of DeepSynthBody stands on: the API (`app`), the workers (`workers`), the model
repository (`model_store`) and the entry points (`deepsynthbody.cli`, `.serve`, `.bench`, `.client`).

What lives here: typed settings (`settings`), domain errors (`errors`), the job contract between the API and the
workers (`jobs`, `job_events`, `job_changes`), the samples file (`samples_file`), the private Redis
(`embedded_redis`) and the child processes it runs in (`processes`), API keys and quotas (`keys`, `quotas`), logs,
the clock and the disk.

It imports nothing above it: no `app`, `workers`, `model_store` or entry point (the import contracts in
pyproject.toml, checked by `lint-imports` in tests/test_layers.py).
"""
