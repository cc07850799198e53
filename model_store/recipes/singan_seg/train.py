"""Train a SinGAN-Seg pyramid on one image and its mask.

python -m model_store.recipes.singan_seg.train \
    --image model_store/recipes/singan_seg/training_images/gi-tract/polyp_with_4_channels.png --out DIR \
    --max-size 128 --min-size 25 --scale-factor 0.75 --channels 32 \
    --iters 500 --seed 0 --threads 1

The image is either an RGBA PNG whose alpha is the mask (the GI-tract polyp), or
a grey (L) or RGB image in any format Pillow reads (PNG, JPEG) with --mask naming
its mask file (same width and height; pixels >= 128 are "in"). The pyramid then
works on grey + mask (2 channels) or R, G, B + mask (4 channels). Non-square
images keep their aspect ratio: the longer side is fitted into --max-size.

Writes DIR/train_log.jsonl (one JSON line per log event, flushed as it goes), DIR/checkpoint.pt
(rewritten after every finished scale, so a partial pyramid is always
exportable) and DIR/training.json (at the end).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self, TextIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from .model import IMAGE_CHANNELS, Discriminator, Generator, Size, cascade, init_weights, upsample

REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class TrainConfig:
    image: str
    out: str
    max_size: int = 128
    min_size: int = 25
    scale_factor: float = 0.75
    channels: int = 32
    iters: int = 500
    seed: int = 0
    threads: int = 1
    d_steps: int = 3
    g_steps: int = 3
    lr: float = 5e-4
    beta1: float = 0.5
    lr_decay_at: float = 0.8
    gp_weight: float = 0.1
    rec_weight: float = 10.0
    noise_amp_init: float = 0.1
    log_every: int = 50
    mask: str | None = None  # the mask's own file; None: the image's alpha channel is the mask


@dataclass
class ScaleResult:
    generator: Generator
    discriminator: Discriminator
    z_opt: Tensor
    noise_amp: float
    seconds: float


# ---------------------------------------------------------------- data


def load_mask(path: Path) -> np.ndarray:
    """A mask file (any mode; pixels >= 128 of its grey value are in) -> (H, W) float32 in {0, 255}."""
    with Image.open(path) as img:
        grey = np.asarray(img.convert("L"))
    return np.where(grey >= 128, 255.0, 0.0).astype(np.float32)


def load_image(path: Path, mask: Path | None = None) -> Tensor:
    """Image (+ mask) -> float tensor (1, C + 1, H, W) in [-1, 1], the mask last.

    Without mask: an RGBA image, alpha = mask (C = 3). With mask: a grey (C = 1)
    or RGB (C = 3) image of the mask's size.
    """
    with Image.open(path) as img:
        if mask is None:
            if img.mode != "RGBA":
                raise ValueError(f"{path}: expected an RGBA image (RGB + mask) or --mask, got mode {img.mode}")
            array = np.asarray(img, dtype=np.float32)
        else:
            if img.mode not in ("L", "RGB"):
                raise ValueError(f"{path}: expected a grey (L) or RGB image with --mask, got mode {img.mode}")
            pixels = np.asarray(img, dtype=np.float32)
            pixels = pixels[..., None] if pixels.ndim == 2 else pixels
            binary = load_mask(mask)
            if binary.shape != pixels.shape[:2]:
                raise ValueError(f"{mask}: mask is {binary.shape[::-1]} px, image {pixels.shape[1::-1]} px")
            array = np.concatenate([pixels, binary[..., None]], axis=2)
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).unsqueeze(0) / 127.5 - 1.0


def mask_fraction(image: Tensor) -> float:
    """Fraction of pixels the mask channel marks, as the service thresholds it (>= mid-range)."""
    return float((image[:, -1] >= 0).float().mean())


def pyramid_sizes(height: int, width: int, max_size: int, min_size: int, scale_factor: float) -> list[Size]:
    """Sizes of all scales, coarsest first.

    Same scheme as SinGAN's adjust_scales2image: fit the longer side into
    max_size, pick the number of scales the nominal factor needs to bring the
    shorter side down to min_size, then stretch the factor so the coarsest
    scale's shorter side is exactly min_size.
    """
    scale1 = min(max_size / max(height, width), 1.0)
    finest = (math.ceil(height * scale1), math.ceil(width * scale1))
    shorter = min(finest)
    if shorter <= min_size:
        return [finest]
    num_scales = math.ceil(math.log(min_size / shorter) / math.log(scale_factor)) + 1
    factor = (min_size / shorter) ** (1.0 / (num_scales - 1))
    sizes = []
    for k in range(num_scales):
        s = factor ** (num_scales - 1 - k)
        # round() before ceil() absorbs float error (25.0000001 must stay 25).
        sizes.append(tuple(math.ceil(round(d * s, 6)) for d in finest))
    return sizes  # type: ignore[return-value]


def build_reals(image: Tensor, sizes: Sequence[Size]) -> list[Tensor]:
    # Resize each scale straight from the full-resolution image (antialiased)
    # instead of chaining resizes, so coarse scales do not accumulate blur.
    return [
        F.interpolate(image, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)
        for size in sizes
    ]


# ---------------------------------------------------------------- logging


class JsonlLogger:
    def __init__(self, path: Path, stream: TextIO = sys.stdout) -> None:
        self._file = path.open("w", encoding="utf-8")
        self._stream = stream

    def log(self, record: dict[str, Any]) -> None:
        line = json.dumps(record)
        self._file.write(line + "\n")
        self._file.flush()  # the run is watched live with tail -f
        print(line, file=self._stream, flush=True)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- training


def gradient_penalty(disc: nn.Module, real: Tensor, fake: Tensor, weight: float) -> Tensor:
    """WGAN-GP with SinGAN's per-pixel gradient norm over the channel axis."""
    alpha = torch.rand(1, 1, 1, 1)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    scores = disc(mixed)
    (grads,) = torch.autograd.grad(scores, mixed, torch.ones_like(scores), create_graph=True)
    return weight * ((grads.norm(2, dim=1) - 1) ** 2).mean()


def upsampled_output(
    frozen: Sequence[Generator],
    amps: Sequence[float],
    sizes: Sequence[Size],
    noises: Sequence[Tensor],
    size: Size,
    image_channels: int = IMAGE_CHANNELS,
) -> Tensor:
    """Output of the already trained scales, brought to the current scale's size."""
    if not frozen:
        return torch.zeros(1, image_channels, *size)
    with torch.no_grad():
        return upsample(cascade(frozen, amps, sizes, noises), size)


def random_noises(sizes: Sequence[Size], image_channels: int = IMAGE_CHANNELS) -> list[Tensor]:
    return [torch.randn(1, image_channels, *size) for size in sizes]


def new_scale_nets(
    cfg: TrainConfig, previous: ScaleResult | None, image_channels: int = IMAGE_CHANNELS
) -> tuple[Generator, Discriminator]:
    generator = Generator(cfg.channels, image_channels)
    discriminator = Discriminator(cfg.channels, image_channels)
    if previous is None:
        generator.apply(init_weights)
        discriminator.apply(init_weights)
    else:
        # SinGAN warm-starts a scale from the one below when the widths match;
        # the nets are size-agnostic, so this is a good prior for finer detail.
        generator.load_state_dict(previous.generator.state_dict())
        discriminator.load_state_dict(previous.discriminator.state_dict())
    return generator, discriminator


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def train_scale(
    n: int,
    reals: Sequence[Tensor],
    sizes: Sequence[Size],
    trained: Sequence[ScaleResult],
    cfg: TrainConfig,
    logger: JsonlLogger,
) -> ScaleResult:
    start = time.perf_counter()
    real, size = reals[n], sizes[n]
    frozen = [r.generator for r in trained]
    amps = [r.noise_amp for r in trained]
    lower_sizes = sizes[:n]
    c = real.shape[1]  # image channels + mask

    # Reconstruction: a fixed noise at the coarsest scale and none above, so
    # one exact noise setting must map back to the training image.
    z_opt = torch.randn(1, c, *size) if n == 0 else torch.zeros(1, c, *size)
    rec_prev = upsampled_output(frozen, amps, lower_sizes, [r.z_opt for r in trained], size, c)
    # Noise is scaled to what the lower scales still get wrong, so each scale
    # only injects variation at the level of detail it has to add.
    noise_amp = 1.0 if n == 0 else cfg.noise_amp_init * math.sqrt(F.mse_loss(rec_prev, real).item())
    logger.log({"event": "scale_start", "scale": n, "size": list(size), "noise_amp": noise_amp})

    generator, discriminator = new_scale_nets(cfg, trained[-1] if trained else None, c)
    generator.train()
    discriminator.train()
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    milestones = [max(1, int(cfg.lr_decay_at * cfg.iters))]
    sched_g = torch.optim.lr_scheduler.MultiStepLR(opt_g, milestones, gamma=0.1)
    sched_d = torch.optim.lr_scheduler.MultiStepLR(opt_d, milestones, gamma=0.1)

    for it in range(cfg.iters):
        noise = torch.randn(1, c, *size)

        set_requires_grad(discriminator, True)
        for _ in range(cfg.d_steps):
            prev = upsampled_output(frozen, amps, lower_sizes, random_noises(lower_sizes, c), size, c)
            with torch.no_grad():
                fake = generator(noise_amp * noise + prev, prev)
            d_real = discriminator(real).mean()
            d_fake = discriminator(fake).mean()
            gp = gradient_penalty(discriminator, real, fake, cfg.gp_weight)
            loss_d = d_fake - d_real + gp
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()

        # The critic is fixed during G steps; skipping its weight grads saves time.
        set_requires_grad(discriminator, False)
        for _ in range(cfg.g_steps):
            fake = generator(noise_amp * noise + prev, prev)
            loss_adv = -discriminator(fake).mean()
            rec = generator(noise_amp * z_opt + rec_prev, rec_prev)
            loss_rec = cfg.rec_weight * F.mse_loss(rec, real)
            opt_g.zero_grad(set_to_none=True)
            (loss_adv + loss_rec).backward()
            opt_g.step()

        sched_g.step()
        sched_d.step()
        if it % cfg.log_every == 0 or it == cfg.iters - 1:
            logger.log(
                {
                    "scale": n,
                    "iter": it,
                    "loss_d": loss_d.item(),
                    "d_real": d_real.item(),
                    "d_fake": d_fake.item(),
                    "gp": gp.item(),
                    "loss_g_adv": loss_adv.item(),
                    "loss_rec": loss_rec.item(),
                    "lr": opt_g.param_groups[0]["lr"],
                    "elapsed_s": round(time.perf_counter() - start, 3),
                }
            )

    generator.eval()
    set_requires_grad(generator, False)
    seconds = time.perf_counter() - start
    logger.log({"event": "scale_end", "scale": n, "seconds": round(seconds, 3)})
    return ScaleResult(generator, discriminator, z_opt, noise_amp, seconds)


# ---------------------------------------------------------------- outputs


def save_checkpoint(path: Path, cfg: TrainConfig, sizes: Sequence[Size], trained: Sequence[ScaleResult]) -> None:
    state = {
        "config": asdict(cfg),
        "num_scales_planned": len(sizes),
        "image_channels": trained[0].z_opt.shape[1] if trained else None,
        "complete": len(trained) == len(sizes),
        # Only the trained scales: a partial pyramid exports as a coarser model.
        "sizes": [list(s) for s in sizes[: len(trained)]],
        "generators": [r.generator.state_dict() for r in trained],
        "discriminators": [r.discriminator.state_dict() for r in trained],
        "z_opts": [r.z_opt for r in trained],
        "noise_amps": [r.noise_amp for r in trained],
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: an export running meanwhile never sees half a file


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git(repo: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None  # no git, or a repository without commits yet
    return result.stdout.strip()


def git_info(repo: Path) -> dict[str, Any]:
    """HEAD plus whether the recipe differs from it (HEAD alone overstates provenance)."""
    commit = git(repo, "rev-parse", "HEAD") or None
    status = git(repo, "status", "--porcelain", "--", str(Path(__file__).parent))
    return {"git_commit": commit, "git_recipe_modified": None if status is None else bool(status)}


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def hardware_info() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python_version": platform.python_version(),
    }


def write_training_json(
    path: Path,
    cfg: TrainConfig,
    sizes: Sequence[Size],
    trained: Sequence[ScaleResult],
    seconds: float,
    started: str,
    extra: dict[str, Any] | None = None,
) -> None:
    info = {
        "recipe": "model_store.recipes.singan_seg",
        "config": asdict(cfg),
        "seed": cfg.seed,
        "num_scales": len(sizes),
        "scale_sizes": [list(s) for s in sizes],
        "noise_amps": [r.noise_amp for r in trained],
        "seconds_per_scale": [round(r.seconds, 3) for r in trained],
        "wall_clock_seconds": round(seconds, 3),
        "hardware": hardware_info(),
        **git_info(REPO_ROOT),
        "image_sha256": sha256_of(Path(cfg.image)),
        **({"mask_sha256": sha256_of(Path(cfg.mask))} if cfg.mask else {}),
        **(extra or {}),
        "started": started,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    path.write_text(json.dumps(info, indent=2) + "\n")


# ---------------------------------------------------------------- entry point


@contextlib.contextmanager
def torch_settings(seed: int, threads: int) -> Iterator[None]:
    """Seeded, deterministic, fixed-thread torch; restored on exit so in-process
    callers (tests) keep their own global settings and RNG stream."""
    saved_threads = torch.get_num_threads()
    saved_deterministic = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.set_num_threads(saved_threads)
            torch.use_deterministic_algorithms(saved_deterministic)


def train(cfg: TrainConfig) -> Path:
    """Train all scales; returns the checkpoint path."""
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "checkpoint.pt"
    with torch_settings(cfg.seed, cfg.threads), JsonlLogger(out / "train_log.jsonl") as logger:
        image = load_image(Path(cfg.image), Path(cfg.mask) if cfg.mask else None)
        sizes = pyramid_sizes(image.shape[2], image.shape[3], cfg.max_size, cfg.min_size, cfg.scale_factor)
        reals = build_reals(image, sizes)
        logger.log({"event": "start", "config": asdict(cfg), "sizes": [list(s) for s in sizes]})
        # What the mask marks must survive the working size (thin structures vanish when downsized).
        fractions = {"mask_fraction_full_size": round(mask_fraction(image), 6),
                     "mask_fraction_finest_scale": round(mask_fraction(reals[-1]), 6)}
        logger.log({"event": "mask", **fractions})
        trained: list[ScaleResult] = []
        for n in range(len(sizes)):
            trained.append(train_scale(n, reals, sizes, trained, cfg, logger))
            save_checkpoint(checkpoint, cfg, sizes, trained)
        seconds = time.perf_counter() - t0
        extra = {"image_channels": image.shape[1], "image_size_full": list(image.shape[2:]), **fractions}
        write_training_json(out / "training.json", cfg, sizes, trained, seconds, started, extra)
        logger.log({"event": "done", "wall_clock_seconds": round(seconds, 3)})
    return checkpoint


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    defaults = TrainConfig(image="", out="")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", required=True, help="RGBA PNG (RGB frame + mask in alpha), or a grey/RGB image with --mask")
    p.add_argument("--mask", help="the mask's own file (same size as the image; >= 128 = in)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--max-size", type=int, default=defaults.max_size)
    p.add_argument("--min-size", type=int, default=defaults.min_size)
    p.add_argument("--scale-factor", type=float, default=defaults.scale_factor)
    p.add_argument("--channels", type=int, default=defaults.channels)
    p.add_argument("--iters", type=int, default=defaults.iters, help="iterations per scale")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--threads", type=int, default=defaults.threads)
    p.add_argument("--log-every", type=int, default=defaults.log_every)
    a = p.parse_args(argv)
    return TrainConfig(
        image=str(Path(a.image).resolve()),
        out=str(Path(a.out).resolve()),
        max_size=a.max_size,
        min_size=a.min_size,
        scale_factor=a.scale_factor,
        channels=a.channels,
        iters=a.iters,
        seed=a.seed,
        threads=a.threads,
        log_every=a.log_every,
        mask=str(Path(a.mask).resolve()) if a.mask else None,
    )


def main(argv: Sequence[str] | None = None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    main()
