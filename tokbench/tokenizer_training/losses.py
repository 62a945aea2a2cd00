"""Reconstruction, perceptual and adversarial pieces of the tokenizer loss.

- Patch discriminator (PatchGAN layout, GroupNorm instead of BatchNorm so that a step does not depend on the batch
  split across processes) with the hinge loss, the taming adaptive weight ‖∇L_rec‖/‖∇L_G‖ on the decoder's last
  layer, a start step, and optional LeCam regularisation (EMA anchors of the discriminator's outputs).
- Perceptual loss only when VGG-16 ImageNet weights are present locally (torch hub cache); LPIPS' calibrated linear
  heads are not shipped, so this is a plain multi-layer VGG feature distance. Without local weights it is off and the
  trainer records why.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class PatchDiscriminator(nn.Module):
    def __init__(self, ch: int = 64, layers: int = 3) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(3, ch, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = ch
        for i in range(1, layers + 1):
            nc = ch * min(2 ** i, 8)
            stride = 2 if i < layers else 1
            mods += [nn.Conv2d(c, nc, 4, stride, 1), nn.GroupNorm(min(32, nc // 4), nc), nn.LeakyReLU(0.2)]
            c = nc
        mods.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.net = nn.Sequential(*mods)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def hinge_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())


def hinge_g_loss(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


class LeCam(nn.Module):
    """LeCam regulariser (Tseng et al. 2021): ‖D(x) − a_fake‖² + ‖D(G) − a_real‖² on the hinge-violating side, with
    EMA anchors kept as buffers (so that resume is exact)."""

    def __init__(self, decay: float = 0.999) -> None:
        super().__init__()
        self.decay = decay
        self.register_buffer("ema_real", torch.zeros(()))
        self.register_buffer("ema_fake", torch.zeros(()))

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.ema_real.mul_(self.decay).add_(real.float().mean(), alpha=1 - self.decay)
            self.ema_fake.mul_(self.decay).add_(fake.float().mean(), alpha=1 - self.decay)
        return F.relu(real - self.ema_fake).pow(2).mean() + F.relu(self.ema_real - fake).pow(2).mean()


def adaptive_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor,
                    max_weight: float = 1e4) -> torch.Tensor:
    """taming's λ = ‖∇_last L_rec‖ / (‖∇_last L_G‖ + 1e-4), clamped to [0, max_weight], detached."""
    gr = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    gg = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (gr.norm() / (gg.norm() + 1e-4)).clamp(0.0, max_weight).detach()


def reconstruction_loss(x: torch.Tensor, rec: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    if kind == "l2":
        return F.mse_loss(rec.float(), x.float())
    if kind == "l1":
        return F.l1_loss(rec.float(), x.float())
    raise ValueError(f"unknown reconstruction loss {kind!r} (l2 or l1)")


# ----------------------------------------------------------------------------------------------------------------------
# Perceptual loss: only with local weights
# ----------------------------------------------------------------------------------------------------------------------
VGG16_FILE = "vgg16-397923af.pth"


def local_vgg16_weights() -> Path | None:
    """torchvision's VGG-16 ImageNet weights in the torch hub cache, or None (we never download them)."""
    try:
        p = Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE
    except Exception:  # noqa: BLE001
        return None
    return p if p.exists() else None


class VGGPerceptual(nn.Module):
    """Mean squared distance of channel-normalised VGG-16 features (relu1_2 … relu5_3); inputs in [−1, 1]."""

    CUTS = (4, 9, 16, 23, 30)

    def __init__(self, weights: Path) -> None:
        super().__init__()
        from torchvision.models import vgg16

        net = vgg16()
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.features = net.features[: self.CUTS[-1]].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat([x, y]).float()
        h = ((h + 1) / 2 - self.mean) / self.std
        loss, start = h.new_zeros(()), 0
        for cut in self.CUTS:
            h = self.features[start:cut](h)
            start = cut
            a, b = F.normalize(h, dim=1).chunk(2)
            loss = loss + (a - b).pow(2).sum(1).mean()
        return loss
