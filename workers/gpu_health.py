"""`python -m workers.gpu_health`: a GPU worker container's health check. Exit 0 where this process can use a GPU
as a worker does (onnxruntime's CUDA provider, CuPy, and a GPU the CUDA runtime sees); else exit 1, saying why.

onnxruntime-gpu lists its CUDA provider whether or not a GPU is there, so asking it alone passes a container
started without its GPU; a worker there runs on the CPU (`workers.runtime`), and says why as it starts, with this
module's reason (`workers.worker`). Asking the CUDA runtime for its devices creates no context on them, so the
check takes no GPU memory from the worker.
"""

from __future__ import annotations

import sys


def problem() -> str | None:
    """Why this process cannot use a GPU; None where it can."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return (f"onnxruntime {ort.__version__} has no CUDA provider: "
                "pip uninstall onnxruntime && pip install -e '.[gpu]' (onnxruntime-gpu and CuPy)")
    try:
        import cupy
    except ImportError as error:
        return f"CuPy cannot be imported ({error}): pip install -e '.[gpu]'"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as error:
        return f"the CUDA runtime finds no GPU it can use: {error}"
    return None if count else "the CUDA runtime sees no GPU"


def main() -> int:
    why_not = problem()
    print(f"not usable: {why_not}" if why_not else "GPU usable", file=sys.stderr if why_not else sys.stdout)
    return 1 if why_not else 0


if __name__ == "__main__":
    sys.exit(main())
