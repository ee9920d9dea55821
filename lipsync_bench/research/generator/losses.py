"""The generator's losses (docs/generator.md): pixel, perceptual, GAN, the plain lip-sync loss, the
stabilized synchronization loss L_ss and the adaptive triplet loss L_at.

Stabilized synchronization loss, as transcribed from the paper:

    L_ss = -log(1 - (|x - y| + eps) / (|x - y| + |y - d| + eps))

with x, y, d the expert's similarity of (generated, audio), (GT, audio) and (identity reference, audio);
only x depends on the generator. As written the ratio is 1 whenever y = d, for every x, and the loss
infinite. Here eps is added once more to the denominator, r = (|x-y| + eps) / (|x-y| + |y-d| + 2 eps),
so r < 1 always, and the loss has a closed form:

    L_ss = log((|x - y| + |y - d| + 2 eps) / (|y - d| + eps))

- **Floor**: its least value over x, at x = y, is log((|y - d| + 2 eps) / (|y - d| + eps)): about
  eps / |y - d| when y and d are apart, but **log 2 at y = d**, whatever x. The generator cannot go below
  it, so the trainer also logs ``sync_floor`` (its mean) and ``sync_excess`` = L_ss - floor, the part x
  still controls; read the loss through the latter.
- **Gradient**: |dL_ss/dx| = 1 / (|x - y| + |y - d| + 2 eps) <= 1 / (2 eps) (500 at the default eps),
  reached near x = y = d; elsewhere it is 1 / (distance to y plus |y - d|).
- r is also clamped to 1 - 1e-6 against rounding in half precision. ``eps`` is a config option
  (``ss_eps``, default 1e-3: the paper's value is unknown).

Which reference gives d (and L_at's negative) is the config's ``d_from``: the reference after G_S
(default: the face G_L is given, and so could copy) or the raw one; the paper does not say, and it moves
the numbers (``sync_d`` 0.498 from the raw reference against 0.415 after a random G_S, in a tiny setup-E
run on two GRID clips).

Adaptive triplet loss (the formula is not published; this is the choice made here): anchor =
generated face, positive = GT, negative = identity reference, distances = mean absolute pixel
difference over the whole face (pose leaking moves the whole face), margin = alpha * d(GT, reference)
(detached):

    L_at = max(0, d(gen, GT) - d(gen, ref) + alpha * d(GT, ref))

When GT and reference look alike (same pose) the margin shrinks to 0 and the loss cannot push the
output away from its own target; the GT itself satisfies the constraint for alpha <= 1 (triangle
inequality). ``alpha`` (``at_alpha``, default 0.5) is a config option; ``fixed_margin`` replaces the
adaptive margin by a constant (setup F).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.models import vgg19

from ...checkpoints import read_checkpoint
from ...errors import LipsyncBenchError
from ...weights import search_dirs
from .run_inputs import VGG_FILE, VGG_URL, perceptual_weights

RATIO_CAP = 1 - 1e-6


def stabilized_sync_loss(x: torch.Tensor, y: torch.Tensor, d: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Mean L_ss over a batch of similarities (see the module docstring). y and d are detached."""
    y, d = y.detach(), d.detach()
    gap = (x - y).abs()
    ratio = (gap + eps) / (gap + (y - d).abs() + 2 * eps)
    return -torch.log1p(-ratio.clamp(max=RATIO_CAP)).mean()


def stabilized_sync_floor(y: torch.Tensor, d: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """The mean of L_ss's least value over x (at x = y): log((|y - d| + 2 eps) / (|y - d| + eps)); log 2
    where y = d. L_ss minus it is what the generator can still reduce."""
    gap = (y - d).abs()
    return torch.log((gap + 2 * eps) / (gap + eps)).mean()


def plain_sync_loss(x: torch.Tensor) -> torch.Tensor:
    """Wav2Lip's lip-sync loss on generated frames: BCE of the similarity against label 1, -log x."""
    return -torch.log(x.clamp(1e-7, 1.0)).mean()


def adaptive_triplet_loss(generated: torch.Tensor, gt: torch.Tensor, reference: torch.Tensor, alpha: float = 0.5,
                          fixed_margin: float | None = None) -> torch.Tensor:
    """Mean L_at over a batch of images (N, ...); see the module docstring."""
    dims = tuple(range(1, generated.dim()))
    d_pos = (generated - gt).abs().mean(dim=dims)
    d_neg = (generated - reference).abs().mean(dim=dims)
    margin = fixed_margin if fixed_margin is not None else alpha * (gt - reference).abs().mean(dim=dims).detach()
    return F.relu(d_pos - d_neg + margin).mean()


def gan_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN loss of the generator."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def gan_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))) / 2




class PerceptualLoss(torch.nn.Module):
    """L1 between VGG-19 features (relu1_2, relu2_2, relu3_4, relu4_4) of generated and GT faces, the
    usual perceptual loss. Needs torchvision's ImageNet weights (``vgg19-dcbb9e9d.pth``) in the weights
    folder or the torch hub cache; ``load`` says what is missing instead of downloading."""

    LAYERS = (3, 8, 17, 26)

    def __init__(self, vgg: torch.nn.Module):
        super().__init__()
        self.features = vgg.features[:max(self.LAYERS) + 1].eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    @classmethod
    def load(cls) -> "PerceptualLoss":
        path = perceptual_weights()
        if path is not None:
            net = vgg19()
            net.load_state_dict(read_checkpoint(path, "VGG-19 weights"))
            return cls(net)
        raise LipsyncBenchError(f"perceptual loss skipped: needs torchvision's VGG-19 ImageNet weights {VGG_FILE} "
                                f"in {', '.join(str(d) for d in search_dirs())} (download {VGG_URL} there)")

    def forward(self, generated: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        x = (generated - self.mean) / self.std
        y = (gt - self.mean) / self.std
        loss = x.new_zeros(())
        for i, layer in enumerate(self.features):
            x, y = layer(x), layer(y)
            if i in self.LAYERS:
                loss = loss + F.l1_loss(x, y)
        return loss / len(self.LAYERS)
