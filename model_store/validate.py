"""Check a candidate model folder before it joins the store: each problem is one clear message."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from model_store.manifest import MANIFEST_FILE, ImageOutput, Manifest, ParameterInput, SignalOutput
from model_store.store import sha256_file, unsafe_entries

_ORT_TYPES = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(float16)": "float16"}
MIN_OPSET = 11
RANDOM_OPS = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                        "Bernoulli"})


def expected_output_shape(output: SignalOutput | ImageOutput) -> tuple[int, ...]:
    """Per-sample shape of the raw output tensor the manifest promises."""
    if isinstance(output, SignalOutput):
        return (len(output.channels), output.length)
    return (len(output.channels), output.height, output.width)


def _manifest(folder: Path) -> tuple[Manifest | None, list[str]]:
    path = folder / MANIFEST_FILE
    if path.is_symlink():
        return None, []  # `unsafe_entries` says so
    if not path.is_file():
        return None, [f"{MANIFEST_FILE} is missing from {folder}"]
    try:
        document = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, [f"{MANIFEST_FILE} is not valid JSON: {exc}"]
    problems = []
    if isinstance(document, dict):
        if not str(document.get("license") or "").strip():
            problems.append("manifest: `license` is missing: name the licence of the weights and code")
        if not document.get("citations"):
            problems.append("manifest: `citations` is missing or empty: cite the work the model comes from")
    try:
        return Manifest.model_validate(document), problems
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            where = ".".join(str(p) for p in error["loc"]) or "(top level)"
            if where.split(".")[0] in ("license", "citations") and problems:
                continue  # already said in plain words above
            problems.append(f"manifest: {where}: {error['msg'].removeprefix('Value error, ')}")
        return None, problems


def _nodes(graph):  # noqa: ANN001, ANN202 - onnx protos
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            for sub in [attribute.g, *attribute.graphs]:
                yield from _nodes(sub)


def graph_problems(artifact: Path) -> list[str]:
    """What onnxruntime must not be given, read with the `onnx` package alone: opsets, ops outside the standard
    domain (custom or contrib kernels), random ops (noise is an input), weights in files outside the artifact."""
    import onnx

    model = onnx.load(str(artifact), load_external_data=False)
    problems = []
    newest = onnx.defs.onnx_opset_version()
    for opset in model.opset_import:
        if opset.domain not in ("", "ai.onnx"):
            problems.append(f"{artifact.name}: imports the opset domain {opset.domain!r}: only the standard ONNX "
                            "operators are served")
        elif not MIN_OPSET <= opset.version <= newest:
            problems.append(f"{artifact.name}: opset {opset.version} is outside {MIN_OPSET}..{newest}: export with "
                            f"an opset in that range")
    if model.functions:
        problems.append(f"{artifact.name}: has model-local functions: export without them")
    ops = set()
    for node in _nodes(model.graph):
        if node.domain not in ("", "ai.onnx"):
            ops.add(f"{node.domain}.{node.op_type} (not a standard operator)")
        elif node.op_type in RANDOM_OPS:
            ops.add(f"{node.op_type} (random: make the noise an input)")
    problems += [f"{artifact.name}: the operator {op} is not allowed" for op in sorted(ops)]
    external = [t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        problems.append(f"{artifact.name}: weights in external files ({', '.join(external[:5])}): save them inside "
                        "the .onnx file")
    return problems


def _smoke(manifest: Manifest, artifact: Path) -> list[str]:
    import onnxruntime as ort  # the contributor's CLI needs it; the API never imports this module

    try:
        session = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - any load failure is the contributor's to fix
        return [f"onnxruntime cannot load {artifact.name}: {exc}"]
    problems = []
    graph_inputs = {i.name: i for i in session.get_inputs()}
    declared = {i.name for i in manifest.inputs}
    if set(graph_inputs) != declared:
        problems.append(f"inputs: the graph has {sorted(graph_inputs)}, the manifest declares {sorted(declared)}")
        return problems
    for spec in manifest.inputs:
        actual = _ORT_TYPES.get(graph_inputs[spec.name].type, graph_inputs[spec.name].type)
        if actual != spec.dtype:
            problems.append(f"input {spec.name}: the graph takes {actual}, the manifest declares {spec.dtype}")
    outputs = [o.name for o in session.get_outputs()]
    if manifest.output.tensor not in outputs:
        return [*problems, f"output: the graph has no output {manifest.output.tensor!r} (it has {outputs})"]
    if problems:
        return problems
    expected = expected_output_shape(manifest.output)
    rng = np.random.default_rng(0)
    for batch in (1, 3):
        feeds: dict[str, np.ndarray] = {}
        for spec in manifest.inputs:
            if isinstance(spec, ParameterInput):
                feeds[spec.name] = np.asarray([manifest.parameters[spec.parameter].default], dtype=spec.dtype)
            else:
                feeds[spec.name] = rng.uniform(-1, 1, size=(batch, *spec.shape)).astype(np.float32)
        try:
            (result,) = session.run([manifest.output.tensor], feeds)
        except Exception as exc:  # noqa: BLE001
            return [f"smoke inference with batch {batch} failed: {exc}"]
        if result.shape != (batch, *expected):
            return [f"output {manifest.output.tensor}: batch {batch} gave shape {list(result.shape)}, "
                    f"the manifest's output spec implies {[batch, *expected]}"]
        if not np.isfinite(result).all():
            return [f"output {manifest.output.tensor}: smoke inference gave NaN or infinite values"]
    return []


def validate(folder: Path) -> list[str]:
    """Every problem found, as messages that say what to fix; an empty list means the folder is valid."""
    import onnx

    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    unsafe = unsafe_entries(folder)
    manifest, problems = _manifest(folder)
    problems = [*unsafe, *problems]
    if manifest is None:
        return problems
    for precision, name in manifest.artifacts().items():
        artifact = folder / name
        if artifact.is_symlink():
            continue  # said above; not read through
        if not artifact.is_file():
            variant = "" if precision == "fp32" else f" ({precision} variant)"
            problems.append(f"artifact {name}{variant} named by the manifest is missing")
            continue
        expected = manifest.artifact_sha256(precision)
        actual = sha256_file(artifact)
        if actual != expected:
            problems.append(f"sha256 of {name} is {actual}; the manifest says {expected}")
        try:
            onnx.checker.check_model(str(artifact), full_check=True)
        except Exception as exc:  # noqa: BLE001 - the checker raises several types
            problems.append(f"ONNX checker rejects {name}: {str(exc).splitlines()[0]}")
            continue
        if graph := graph_problems(artifact):  # before onnxruntime sees the graph
            problems.extend(graph)
            continue
        problems.extend(_smoke(manifest, artifact))
    return problems
