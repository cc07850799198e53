"""SinGAN-Seg networks: per-scale generator/discriminator and the sampling pyramid.

Follows SinGAN (Shaham et al., ICCV 2019) as used by SinGAN-Seg (Thambawita et
al., PLOS ONE 2022): every scale is a small fully convolutional GAN working on
image_channels channels (the image's grey or RGB channels + its mask; 4 for the
GI-tract polyp), and each generator only adds residual detail to the upsampled
output of the scale below.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMAGE_CHANNELS = 4  # R, G, B, mask: the default (the GI-tract model); grey + mask is 2
NUM_LAYERS = 5
KERNEL_SIZE = 3

Size = tuple[int, int]


def norm_layer(channels: int) -> nn.Module:
    """SinGAN's batch norm, evaluated with the statistics of the image itself.

    SinGAN trains on a batch of one image, so its BatchNorm2d in train mode is
    exactly an affine InstanceNorm2d. SinGAN then samples in eval mode with the
    running averages, which differ from what each net was trained with; on this
    4-channel image that drift compounds over the scales and wrecks the mask
    channel (measured: reconstruction RMSE of the mask 0.14 with batch
    statistics vs 0.82 with running averages after 5 scales). Per-image
    statistics keep sampling identical to training and are independent of the
    batch size the caller uses.
    """
    return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)


def conv_block(in_channels: int, out_channels: int, padding: int = 0) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, KERNEL_SIZE, padding=padding),
        norm_layer(out_channels),
        nn.LeakyReLU(0.2),
    )


def conv_stack(
    channels: int, out_layer: nn.Module, input_padding: int = 0, image_channels: int = IMAGE_CHANNELS
) -> nn.Sequential:
    """NUM_LAYERS - 1 conv blocks followed by the given output layer.

    All convs are unpadded ("valid") as in SinGAN, except that the first one
    may zero-pad the input: SinGAN pads the generator input once rather than
    at every layer, and padding inside the first conv is the same arithmetic
    without a separate Pad op (which torch's ONNX exporter cannot convert
    down to opset 17).
    """
    blocks: list[nn.Module] = [conv_block(image_channels, channels, input_padding)]
    blocks += [conv_block(channels, channels) for _ in range(NUM_LAYERS - 2)]
    blocks.append(out_layer)
    return nn.Sequential(*blocks)


class Generator(nn.Module):
    """One scale: returns prev + net(x), where x = amp * z + prev."""

    def __init__(self, channels: int, image_channels: int = IMAGE_CHANNELS) -> None:
        super().__init__()
        tail = nn.Sequential(nn.Conv2d(channels, image_channels, KERNEL_SIZE), nn.Tanh())
        # Each valid 3x3 conv trims one pixel per side; padding the input by
        # that total keeps the output the size of the scale.
        self.net = conv_stack(channels, tail, NUM_LAYERS * (KERNEL_SIZE // 2), image_channels)

    def forward(self, x: Tensor, prev: Tensor) -> Tensor:
        return prev + self.net(x)


class Discriminator(nn.Module):
    """Patch critic: one unbounded WGAN score per receptive field."""

    def __init__(self, channels: int, image_channels: int = IMAGE_CHANNELS) -> None:
        super().__init__()
        self.net = conv_stack(channels, nn.Conv2d(channels, 1, KERNEL_SIZE), image_channels=image_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def init_weights(module: nn.Module) -> None:
    """DCGAN-style init used by SinGAN for the first scale."""
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.InstanceNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def upsample(x: Tensor, size: Size) -> Tensor:
    # Bilinear rather than SinGAN's bicubic imresize: ONNX Resize reproduces
    # torch's bilinear exactly, which keeps the exported graph at parity.
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def cascade(
    generators: Sequence[nn.Module],
    noise_amps: Sequence[float],
    sizes: Sequence[Size],
    noises: Sequence[Tensor],
) -> Tensor:
    """Run scales 0..len(generators)-1 coarse-to-fine; returns the last scale's image.

    noises[k] must already have the shape of scale k. Used both for training
    (the frozen lower scales) and for the exported pyramid, so both share one path.
    """
    x = torch.zeros_like(noises[0])
    for k, generator in enumerate(generators):
        if k > 0:
            x = upsample(x, sizes[k])
        x = generator(noise_amps[k] * noises[k] + x, x)
    return x


class Pyramid(nn.Module):
    """The whole trained multi-scale generator as one module (one ONNX graph).

    forward(noise_0, ..., noise_{K-1}, start_scale) -> image. Scales k <
    start_scale use the baked reconstruction noise z_opt_k instead of noise_k
    (SinGAN's gen_start_scale), selected with a tensor mask so the choice is
    data, not Python control flow, and survives export.
    """

    def __init__(
        self,
        generators: Sequence[Generator],
        noise_amps: Sequence[float],
        sizes: Sequence[Size],
        z_opts: Sequence[Tensor],
    ) -> None:
        super().__init__()
        if not (len(generators) == len(noise_amps) == len(sizes) == len(z_opts)):
            raise ValueError("generators, noise_amps, sizes and z_opts must have one entry per scale")
        self.generators = nn.ModuleList(generators)
        self.noise_amps = [float(a) for a in noise_amps]
        self.sizes = [(int(h), int(w)) for h, w in sizes]
        for k, z in enumerate(z_opts):
            self.register_buffer(f"z_opt_{k}", z.detach().clone())

    @property
    def image_channels(self) -> int:
        return int(self.z_opt(0).shape[1])

    @property
    def num_scales(self) -> int:
        return len(self.generators)

    def z_opt(self, k: int) -> Tensor:
        return getattr(self, f"z_opt_{k}")

    def sample(self, noises: Sequence[Tensor], start_scale: Tensor) -> Tensor:
        if len(noises) != self.num_scales:
            raise ValueError(f"expected {self.num_scales} noise tensors, got {len(noises)}")
        chosen = []
        for k, noise in enumerate(noises):
            use_rec = (start_scale > k).reshape(1, 1, 1, 1)
            chosen.append(torch.where(use_rec, self.z_opt(k), noise))
        image = cascade(self.generators, self.noise_amps, self.sizes, chosen)
        # The residual sum of tanh outputs can overshoot [-1, 1]; SinGAN clamps
        # when converting to pixels, we clamp so the graph's range is a contract.
        return image.clamp(-1.0, 1.0)

    def forward(self, *inputs: Tensor) -> Tensor:
        """inputs = (noise_0, ..., noise_{K-1}, start_scale); flat so ONNX names map 1:1."""
        *noises, start_scale = inputs
        return self.sample(noises, start_scale)
