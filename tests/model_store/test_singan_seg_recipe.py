"""End-to-end check of the SinGAN-Seg recipe on a tiny configuration.

Trains a 3-scale, 8-channel pyramid for a few iterations, exports it and
checks the ONNX graph against the torch module and against its contract; the
same for a grey JPEG with its mask in its own file. Then holds every SinGAN-Seg
model installed in the store to its training image (checks.py's figures).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from model_store.manifest import Manifest
from model_store.recipes.singan_seg import GI_TRACT_IMAGE as IMAGE
from model_store.recipes.singan_seg import TRAINING_IMAGES, checks, export, sizing, train
from model_store.recipes.singan_seg.model import Pyramid, cascade

TOLERANCE = 1e-4
TINY_ARGS = ["--max-size", "32", "--min-size", "16", "--scale-factor", "0.75", "--channels", "8"]
TINY_ARGS += ["--iters", "6", "--seed", "0", "--threads", "1", "--log-every", "2"]


def train_tiny(out: Path) -> Path:
    train.main(["--image", str(IMAGE), "--out", str(out), *TINY_ARGS])
    return out / "checkpoint.pt"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    run = tmp_path_factory.mktemp("run")
    checkpoint = train_tiny(run)
    out = tmp_path_factory.mktemp("export")
    export.main(["--checkpoint", str(checkpoint), "--out", str(out)])
    return checkpoint, out


@pytest.fixture(scope="module")
def pyramid(exported: tuple[Path, Path]) -> Pyramid:
    return export.load_pyramid(exported[0])


@pytest.fixture(scope="module")
def session(exported: tuple[Path, Path]) -> ort.InferenceSession:
    return ort.InferenceSession(str(exported[1] / "model.onnx"), providers=["CPUExecutionProvider"])


def draw(pyramid: Pyramid, batch: int, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 4, h, w, generator=gen) for h, w in pyramid.sizes]


def run_onnx(session: ort.InferenceSession, noises: list[torch.Tensor], start_scale: int) -> np.ndarray:
    feed = {f"noise_{k}": n.numpy() for k, n in enumerate(noises)}
    feed["start_scale"] = np.array([start_scale], dtype=np.int64)
    return session.run(["image"], feed)[0]


def run_torch(pyramid: Pyramid, noises: list[torch.Tensor], start_scale: int) -> np.ndarray:
    with torch.no_grad():
        return pyramid(*noises, torch.tensor([start_scale])).numpy()


def test_run_outputs(exported: tuple[Path, Path]) -> None:
    checkpoint, out = exported
    run = checkpoint.parent
    info = json.loads((run / "training.json").read_text())
    assert info["seed"] == 0
    assert info["config"]["iters"] == 6
    assert info["num_scales"] == 3
    assert info["wall_clock_seconds"] > 0
    assert {"cpu_model", "cpu_count", "torch_version", "torch_threads"} <= info["hardware"].keys()
    assert "git_commit" in info and "date" in info
    assert info["image_sha256"] == hashlib.sha256(IMAGE.read_bytes()).hexdigest()
    records = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert {r["scale"] for r in records if "loss_d" in r} == {0, 1, 2}
    for name in ("model.onnx", "export.json", "training.json", "train_log.jsonl"):
        assert (out / name).is_file()


def test_export_json_contract(exported: tuple[Path, Path], pyramid: Pyramid) -> None:
    description = json.loads((exported[1] / "export.json").read_text())
    k = pyramid.num_scales
    height, width = pyramid.sizes[-1]
    assert description["num_scales"] == k == 3
    assert description["opset"] == 17
    assert description["image_size"] == [height, width]
    assert [i["name"] for i in description["inputs"]] == [f"noise_{i}" for i in range(k)] + ["start_scale"]
    for entry, (h, w) in zip(description["inputs"], pyramid.sizes):
        assert entry == {"name": entry["name"], "shape": [None, 4, h, w], "dtype": "float32", "distribution": "normal"}
    assert description["inputs"][-1] == {"name": "start_scale", "shape": [1], "dtype": "int64"}
    assert description["outputs"] == [{"name": "image", "shape": [None, 4, height, width], "dtype": "float32"}]


def test_graph_is_valid_and_deterministic(exported: tuple[Path, Path]) -> None:
    model = onnx.load(str(exported[1] / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert not {n.op_type for n in model.graph.node} & export.RANDOM_OPS


@pytest.mark.parametrize("start_scale", [0, 2])
def test_onnx_matches_torch(pyramid: Pyramid, session: ort.InferenceSession, start_scale: int) -> None:
    noises = draw(pyramid, batch=3, seed=start_scale)
    got = run_onnx(session, noises, start_scale)
    np.testing.assert_allclose(got, run_torch(pyramid, noises, start_scale), rtol=0, atol=TOLERANCE)
    assert got.min() >= -1.0 and got.max() <= 1.0


@pytest.mark.parametrize("batch", [1, 5])
def test_dynamic_batch(pyramid: Pyramid, session: ort.InferenceSession, batch: int) -> None:
    noises = draw(pyramid, batch=batch, seed=10 + batch)
    got = run_onnx(session, noises, 0)
    assert got.shape == (batch, 4, *pyramid.sizes[-1])
    np.testing.assert_allclose(got, run_torch(pyramid, noises, 0), rtol=0, atol=TOLERANCE)
    # Samples in a batch are independent draws, not copies.
    assert batch == 1 or not np.allclose(got[0], got[1])


def test_start_scale_uses_reconstruction_noise(pyramid: Pyramid, session: ort.InferenceSession) -> None:
    k = pyramid.num_scales
    first, second = draw(pyramid, batch=2, seed=100), draw(pyramid, batch=2, seed=200)

    # start_scale = K: every scale uses z_opt, so the noise inputs are ignored
    # and the output is the reconstruction of the training image.
    full_rec = run_onnx(session, first, k)
    np.testing.assert_array_equal(full_rec, run_onnx(session, second, k))
    with torch.no_grad():
        z_opts = [pyramid.z_opt(i) for i in range(k)]
        expected = cascade(pyramid.generators, pyramid.noise_amps, pyramid.sizes, z_opts).clamp(-1, 1)
    np.testing.assert_allclose(full_rec, np.repeat(expected.numpy(), 2, axis=0), rtol=0, atol=TOLERANCE)

    # start_scale = K-1: coarse noise is ignored, the finest scale's is used.
    mixed = second[:-1] + first[-1:]
    np.testing.assert_array_equal(run_onnx(session, first, k - 1), run_onnx(session, mixed, k - 1))
    assert not np.array_equal(run_onnx(session, first, k - 1), run_onnx(session, second, k - 1))


def test_training_is_seeded(exported: tuple[Path, Path], tmp_path: Path) -> None:
    first = torch.load(exported[0], weights_only=True)
    second = torch.load(train_tiny(tmp_path), weights_only=True)
    assert first["noise_amps"] == second["noise_amps"]
    for a, b in zip(first["z_opts"] + _tensors(first), second["z_opts"] + _tensors(second)):
        assert torch.equal(a, b)


def _tensors(checkpoint: dict) -> list[torch.Tensor]:
    return [t for sd in checkpoint["generators"] + checkpoint["discriminators"] for t in sd.values()]


# ---------------------------------------------------------------- other inputs than the GI tract's RGBA PNG

CHEST = TRAINING_IMAGES / "chest-xray"
CHEST_IMAGE, CHEST_MASK = CHEST / "3b46de94.jpg", CHEST / "1676285.png"
SKIN_IMAGE, SKIN_MASK = TRAINING_IMAGES / "skin-lesion" / "ISIC_0014608.jpg", TRAINING_IMAGES / "skin-lesion" / "ISIC_0014608_segmentation.png"
RETINA_IMAGE, RETINA_MASK = TRAINING_IMAGES / "retina" / "01_dr.JPG", TRAINING_IMAGES / "retina" / "01_dr.png"


@pytest.fixture(scope="module")
def grey_exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    run = tmp_path_factory.mktemp("grey_run")
    train.main(["--image", str(CHEST_IMAGE), "--mask", str(CHEST_MASK), "--out", str(run), *TINY_ARGS])
    out = tmp_path_factory.mktemp("grey_export")
    export.main(["--checkpoint", str(run / "checkpoint.pt"), "--out", str(out)])  # card.json beside the image
    return run, out


def test_a_grey_jpeg_with_its_own_mask_file_trains_and_exports_grey_plus_mask(grey_exported: tuple[Path, Path]) -> None:
    run, out = grey_exported
    info = json.loads((run / "training.json").read_text())
    assert info["image_channels"] == 2 and info["image_size_full"] == [2000, 2000]
    assert info["mask_sha256"] == hashlib.sha256(CHEST_MASK.read_bytes()).hexdigest()
    # Lungs are a blob: the 32 px working size keeps the fraction of the 2000 px mask.
    assert info["mask_fraction_full_size"] == pytest.approx(0.396, abs=1e-3)
    assert info["mask_fraction_finest_scale"] == pytest.approx(info["mask_fraction_full_size"], rel=0.1)
    description = json.loads((out / "export.json").read_text())
    assert {tuple(i["shape"][1:2]) for i in description["inputs"][:-1]} == {(2,)}
    card = Manifest.model_validate_json((out / "manifest.json").read_text())
    assert (card.category, card.subcategory, card.id) == ("respiratory", "chest-xray", "singan-seg-chest-xray")
    assert card.output.channels == ["grey", "mask"] and card.output.color_channels == ["grey"]
    assert "not new patients" in card.description and "CC BY 3.0" in card.license
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    pyramid = export.load_pyramid(run / "checkpoint.pt")
    assert pyramid.image_channels == 2
    noises = [torch.randn(3, 2, h, w, generator=torch.Generator().manual_seed(5)) for h, w in pyramid.sizes]
    got = run_onnx(session, noises, 0)
    assert got.shape == (3, 2, *pyramid.sizes[-1])
    np.testing.assert_allclose(got, run_torch(pyramid, noises, 0), rtol=0, atol=TOLERANCE)
    assert set(np.unique(checks.to_pixels(got)[..., -1])) <= {0, 255}


def test_an_rgb_jpeg_keeps_its_aspect_ratio_and_its_mask_is_binary() -> None:
    image = train.load_image(SKIN_IMAGE, SKIN_MASK)
    assert image.shape == (1, 4, 1936, 2592)  # R, G, B + mask, not square
    assert set(torch.unique(image[:, 3]).tolist()) == {-1.0, 1.0}
    sizes = train.pyramid_sizes(1936, 2592, 128, 25, 0.75)
    assert sizes[-1] == (96, 128) and sizes[0][0] == 25 and sizes[0][1] > 25


@pytest.mark.parametrize(
    ("image", "mask", "message"),
    [(CHEST_IMAGE, None, "RGBA"), (CHEST_IMAGE, SKIN_MASK, "mask is"), (IMAGE, CHEST_MASK, r"grey \(L\) or RGB")],
)
def test_inputs_that_do_not_fit_are_refused_with_a_reason(image: Path, mask: Path | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        train.load_image(image, mask)


def test_thin_vessels_need_a_larger_working_size_than_blobs() -> None:
    """Why the retina gets a larger --max-size: measured, not guessed (see sizing.py)."""
    full, at_128, at_256 = sizing.survival(RETINA_IMAGE, RETINA_MASK, [128, 256])
    print("retina vessel fraction: full", full, "128:", at_128, "256:", at_256)
    assert full["mask_fraction"] == pytest.approx(0.051, abs=1e-3)
    assert at_128["mask_fraction"] < 0.5 * full["mask_fraction"]  # vessels thinner than a pixel vanish
    assert at_128["mask_fraction"] < at_256["mask_fraction"] < full["mask_fraction"]
    assert at_256["mask_fraction"] > 0.7 * full["mask_fraction"]


# ---------------------------------------------------------------- every SinGAN-Seg model in the store

STORE_MODELS = checks.model_folders()


def test_the_store_holds_singan_seg_models() -> None:
    assert len(STORE_MODELS) >= 2  # the GI tract and at least one more body system


@pytest.mark.parametrize("folder", STORE_MODELS, ids=lambda f: "/".join(f.parts[-4:-1]))
def test_training_image_mask_and_source_are_in_the_repository(folder: Path) -> None:
    image, mask = checks.training_files(folder)  # found by the sha256 training.json recorded
    assert image.is_relative_to(TRAINING_IMAGES) and (image.parent / "SOURCE.md").is_file()
    assert mask is None or mask.parent == image.parent
    card = json.loads((folder / "manifest.json").read_text())
    assert card["license"] and card["citations"]
    assert (card["category"], card["subcategory"]) == tuple(folder.parts[-4:-2])


@pytest.mark.parametrize("folder", STORE_MODELS, ids=lambda f: "/".join(f.parts[-4:-1]))
def test_samples_hold_to_the_training_image(folder: Path) -> None:
    figures = checks.figures(folder, count=16, seed=0)
    print(folder.relative_to(checks.STORE), json.dumps(figures))
    assert figures["masks_binary"]
    # Each sample's masked fraction within a factor of two of the training mask's.
    assert 0.5 <= figures["mask_fraction_ratio_min"] and figures["mask_fraction_ratio_max"] <= 2.0, figures
    assert figures["distinct_masks"] == 16
    assert figures["min_distance_between_samples"] > 3, figures  # mean |difference| in grey levels
    assert figures["min_distance_to_training"] > 3, figures  # no sample is a copy of the training frame
    for sample_mean, training_mean in zip(figures["mean_samples"], figures["mean_training"]):
        assert abs(sample_mean - training_mean) < 20, figures
    for sample_std, training_std in zip(figures["std_samples"], figures["std_training"]):
        assert abs(sample_std - training_std) < 0.35 * training_std, figures
