"""Export a trained SinGAN-Seg pyramid to ONE ONNX graph (opset 17).

python -m model_store.recipes.singan_seg.export --checkpoint DIR/checkpoint.pt --out OUTDIR [--card card.json]

Graph interface (a contract with the serving side):
  inputs  noise_0 .. noise_{K-1}: float32 (N, C, h_k, w_k), standard normal,
          0 = coarsest; drawn by the caller (the graph has no random ops).
          start_scale: int64 (1,); scales k < start_scale use the baked
          reconstruction noise instead of noise_k.
  output  image: float32 (N, C, H, W) in [-1, 1]; channels R, G, B, mask (C = 4)
          or grey, mask (C = 2), as the training image had.

The card spec (id, body system, licence, citations) defaults to card.json beside
the training image the checkpoint was trained on.

Writes OUTDIR/model.onnx, OUTDIR/export.json and the model card OUTDIR/manifest.json,
and copies training.json and train_log.jsonl from the checkpoint's directory when they exist.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from . import card
from .model import IMAGE_CHANNELS, Generator, Pyramid

OPSET = 17
OUTPUT_NAME = "image"
START_SCALE_NAME = "start_scale"
RUN_FILES = ("training.json", "train_log.jsonl")
# The caller supplies all randomness; a random op in the graph would break
# reproducible sampling from the service's counter-based RNG.
RANDOM_OPS = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}
# Measured on this recipe's models: ~6e-6 to 3.3e-5 up to 128 px, 1.44e-4 for the
# 7-scale 128x192 retina (float32 adds in another order, compounded over the
# scales); one grey level is 2/255 = 7.8e-3, so 5e-4 is under a 15th of one.
PARITY_TOLERANCE = 5e-4


def noise_name(k: int) -> str:
    return f"noise_{k}"


def load_pyramid(checkpoint: Path, allow_partial: bool = True) -> Pyramid:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not state["complete"] and not allow_partial:
        # Training rewrites the checkpoint after every scale; exporting one
        # mid-run would silently publish a coarser model.
        trained, planned = len(state["generators"]), state["num_scales_planned"]
        raise SystemExit(
            f"{checkpoint}: only {trained}/{planned} scales trained; pass --allow-partial to export anyway"
        )
    channels = state["config"]["channels"]
    image_channels = state.get("image_channels") or IMAGE_CHANNELS  # checkpoints before grey images: 4
    generators = []
    for gen_state in state["generators"]:
        generator = Generator(channels, image_channels)
        generator.load_state_dict(gen_state)
        generators.append(generator)
    sizes = [tuple(s) for s in state["sizes"]]
    pyramid = Pyramid(generators, state["noise_amps"], sizes, state["z_opts"]).eval()
    for p in pyramid.parameters():
        p.requires_grad_(False)
    return pyramid


def example_inputs(pyramid: Pyramid, batch: int, start_scale: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    noises = tuple(torch.randn(batch, pyramid.image_channels, h, w, generator=gen) for h, w in pyramid.sizes)
    return noises + (torch.tensor([start_scale], dtype=torch.int64),)


def export_onnx(pyramid: Pyramid, path: Path) -> None:
    num_scales = pyramid.num_scales
    batch = torch.export.Dim("batch")
    # forward(*inputs) is one variadic parameter, hence the extra tuple level.
    dynamic_shapes = (tuple({0: batch} for _ in range(num_scales)) + (None,),)
    input_names = [noise_name(k) for k in range(num_scales)] + [START_SCALE_NAME]
    with warnings.catch_warnings():
        # Known-noisy exporter chatter (deprecations, duplicate axis names).
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        torch.onnx.export(
            pyramid,
            example_inputs(pyramid, batch=2, start_scale=0),
            str(path),
            input_names=input_names,
            output_names=[OUTPUT_NAME],
            opset_version=OPSET,
            dynamo=True,
            external_data=False,  # one self-contained file
            dynamic_shapes=dynamic_shapes,
        )


def check_graph(path: Path) -> onnx.ModelProto:
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset != OPSET:
        raise RuntimeError(f"exported opset {opset}, expected {OPSET}")
    random_ops = {n.op_type for n in model.graph.node} & RANDOM_OPS
    if random_ops:
        raise RuntimeError(f"graph contains random ops: {sorted(random_ops)}")
    return model


def run_onnx(path: Path, inputs: Sequence[torch.Tensor]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run([OUTPUT_NAME], {n: t.numpy() for n, t in zip(names, inputs)})[0]


def check_parity(pyramid: Pyramid, path: Path, batch: int = 3) -> float:
    """Max |onnx - torch| over a fully random and a mostly reconstructed draw."""
    worst = 0.0
    for start_scale in (0, pyramid.num_scales - 1):
        inputs = example_inputs(pyramid, batch, start_scale, seed=1 + start_scale)
        expected = pyramid(*inputs).numpy()
        got = run_onnx(path, inputs)
        if got.shape != expected.shape:
            raise RuntimeError(f"onnx output shape {got.shape} != torch {expected.shape}")
        worst = max(worst, float(np.abs(got - expected).max()))
    if worst > PARITY_TOLERANCE:
        raise RuntimeError(f"onnx/torch mismatch {worst:.3g} > {PARITY_TOLERANCE}")
    return worst


def interface(pyramid: Pyramid) -> dict[str, Any]:
    height, width = pyramid.sizes[-1]
    c = pyramid.image_channels
    inputs: list[dict[str, Any]] = [
        {"name": noise_name(k), "shape": [None, c, h, w], "dtype": "float32", "distribution": "normal"}
        for k, (h, w) in enumerate(pyramid.sizes)
    ]
    inputs.append({"name": START_SCALE_NAME, "shape": [1], "dtype": "int64"})
    return {
        "inputs": inputs,
        "outputs": [{"name": OUTPUT_NAME, "shape": [None, c, height, width], "dtype": "float32"}],
        "num_scales": pyramid.num_scales,
        "image_size": [height, width],
        "opset": OPSET,
    }


def graph_interface(model: onnx.ModelProto) -> dict[str, list[tuple[str, list[int | None]]]]:
    """Names and shapes as the ONNX graph declares them (symbolic dims -> None)."""

    def describe(values: Sequence[onnx.ValueInfoProto]) -> list[tuple[str, list[int | None]]]:
        return [
            (v.name, [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim])
            for v in values
        ]

    return {"inputs": describe(model.graph.input), "outputs": describe(model.graph.output)}


def check_interface(model: onnx.ModelProto, description: dict[str, Any]) -> None:
    """export.json is what the service trusts; fail if it disagrees with the graph."""
    declared = {key: [(e["name"], e["shape"]) for e in description[key]] for key in ("inputs", "outputs")}
    actual = graph_interface(model)
    if declared != actual:
        raise RuntimeError(f"graph interface {actual} differs from export.json {declared}")


def copy_run_files(checkpoint: Path, out: Path) -> list[str]:
    copied = []
    for name in RUN_FILES:
        source = checkpoint.parent / name
        if source.exists():
            shutil.copyfile(source, out / name)
            copied.append(name)
    return copied


def default_card_spec(checkpoint: Path) -> Path:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return Path(state["config"]["image"]).parent / card.CARD_SPEC


def export(checkpoint: Path, out: Path, allow_partial: bool = False, card_spec: Path | None = None) -> dict[str, Any]:
    spec = card.load_spec(card_spec or default_card_spec(checkpoint))
    pyramid = load_pyramid(checkpoint, allow_partial)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / "model.onnx"
    export_onnx(pyramid, model_path)
    model = check_graph(model_path)
    description = interface(pyramid)
    check_interface(model, description)
    max_diff = check_parity(pyramid, model_path)
    (out / "export.json").write_text(json.dumps(description, indent=2) + "\n")
    copied = copy_run_files(checkpoint, out)
    card.write(out, description, spec)
    print(
        f"wrote {model_path} ({pyramid.num_scales} scales, image {description['image_size']}); "
        f"onnxruntime batch 3 max |onnx - torch| = {max_diff:.2e}; copied {copied or 'no run files'}"
    )
    return description


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--allow-partial", action="store_true", help="export a checkpoint from a run still in progress")
    p.add_argument("--card", type=Path, help="card spec JSON (default: card.json beside the training image)")
    a = p.parse_args(argv)
    # The dynamo exporter logs one line per missing optional op library.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    export(a.checkpoint, a.out, a.allow_partial, a.card)


if __name__ == "__main__":
    main()
