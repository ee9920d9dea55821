"""THEval's video-quality metrics (Newbyl/THEval cfe23fe ``Video_Quality/``, Apache-2.0), which score
frames with pyiqa's models (THEval pins pyiqa 0.1.13; the architecture below is unchanged in 0.1.16).
No ground-truth video: each is computed on the generated video's whole frames.

``theval_global_aesthetic`` (global_aesthetic.py): ``pyiqa.create_metric("topiq_iaa")`` on every frame,
the video's value the mean of the per-frame scores (1 to 10, higher is better). THEval reads decord's RGB
frames, ``ToTensor`` (uint8 / 255), and scores them in batches of 64 (the batch does not change a frame's
score). TOPIQ-IAA is pyiqa's CFANet with a Swin-B backbone trained on AVA (Chen et al., "TOPIQ: A
Top-down Approach from Semantics to Distortions for Image Quality Assessment", TIP 2024), as
``DEFAULT_CONFIGS["topiq_iaa"]`` configures it (no reference image, 512 channels inside, 8 heads, 10
classes):

- the frame is resized to 384x384 (bilinear with antialiasing, ``torchvision``'s ``resize`` of a float
  tensor, aspect ratio not kept) and normalised with ImageNet's mean and std;
- the backbone is Swin-B (``swin_base_patch4_window12_384``: patch 4, window 12, embedding 128, depths
  2, 2, 18, 2, heads 4, 8, 16, 32; its final norm and classifier unused); the features are taken after each
  stage's patch merging and after the last stage: 256, 512, 1024 and 1024 channels on 48, 24, 12 and
  12 pixel grids;
- per level, coarse to fine: a gated pooling (a 1x1 convolution to twice the channels, split in two; the
  first half through GELU, times a sigmoid weight map from the second half through 1x1 -> 64, GELU,
  3x3 -> 64, GELU, 3x3 -> 1), average-pooled to the coarsest grid (12x12), a 1x1 convolution to 512
  channels with GELU, a learnt 32x32 position embedding (half rows, half columns) resized bicubically to
  the grid and added, then one pre-norm transformer encoder layer (8 heads, feed-forward 2048, exact
  GELU);
- the coarsest level's tokens query each finer level in turn through a pre-norm cross-attention layer
  (the memory layer-normed; feed-forward as above), then one more encoder layer ("attention pooling");
- the tokens' mean goes through LayerNorm, Linear, GELU, LayerNorm, Linear, GELU, Linear to 10 logits and
  a softmax; the score is the mean opinion score of that distribution, sum over k = 1..10 of k p_k.

The backbone is torchvision's Swin Transformer (the same operations as pyiqa's timm copy); the weights
are pyiqa's published file ``cfanet_iaa_ava_swin-393b41b4.pth`` (its ``params`` entry: one state dict
for the backbone and the head), read safely and never downloaded at evaluation time; another file is
given with ``--param theval_global_aesthetic.weights=FILE``.

``theval_mouth_quality`` (MUSIQ on mouth crops) and ``theval_face_quality`` (TOPIQ-NR-Face) are declared
but not available (``declarations``).
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from .. import weights
from ..checkpoints import load_state, read_checkpoint
from ..errors import LipsyncBenchError, MetricError, UnavailableError
from .streaming import Accumulator, FrameBatch, MetricContext, MetricValue, per_frame_details

#: The square the frames are resized to (Swin-B's input).
INPUT_SIZE = 384
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: swin_base_patch4_window12_384.
SWIN = dict(patch_size=[4, 4], embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=[12, 12])
#: The backbone's levels: the modules of torchvision's ``features`` after which a level is read (the
#: three patch mergings and the last stage), and their channels.
LEVELS = (2, 4, 6, 7)
LEVEL_CHANNELS = (256, 512, 1024, 1024)
INTER_DIM = 512
HEADS = 8
FEED_FORWARD = min(4 * INTER_DIM, 2048)
CLASSES = 10
#: The position embedding's grid.
POSITION_GRID = 32
#: Frames scored at once: THEval's batch on a GPU; fewer on CPU (bounded memory). A frame's score does
#: not depend on its batch.
THEVAL_BATCH = 64
CPU_BATCH = 4

_MODELS: dict[tuple, nn.Module] = {}


class _EncoderLayer(nn.Module):
    """Pre-norm self-attention and feed-forward, each residual (sequence-first tokens)."""

    def __init__(self):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(INTER_DIM, HEADS)
        self.linear1, self.linear2 = nn.Linear(INTER_DIM, FEED_FORWARD), nn.Linear(FEED_FORWARD, INTER_DIM)
        self.norm1, self.norm2 = nn.LayerNorm(INTER_DIM), nn.LayerNorm(INTER_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.self_attn(y, y, y, need_weights=False)[0]
        return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))


class _DecoderLayer(nn.Module):
    """Pre-norm cross-attention of the queries to a layer-normed memory, then feed-forward."""

    def __init__(self):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(INTER_DIM, HEADS)
        self.linear1, self.linear2 = nn.Linear(INTER_DIM, FEED_FORWARD), nn.Linear(FEED_FORWARD, INTER_DIM)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(INTER_DIM) for _ in range(3))

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        memory = self.norm2(memory)
        x = x + self.multihead_attn(self.norm1(x), memory, memory, need_weights=False)[0]
        return x + self.linear2(F.gelu(self.linear1(self.norm3(x))))


class _Stack(nn.Module):
    """One layer under ``layers.0`` (the published state dict's names)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layers = nn.ModuleList([layer])

    def forward(self, *args) -> torch.Tensor:
        return self.layers[0](*args)


class _GatedPooling(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.splitconv = nn.Conv2d(dim, dim * 2, 1)
        self.weight_blk = nn.Sequential(nn.Conv2d(dim, 64, 1), nn.GELU(), nn.Conv2d(64, 64, 3, padding=1), nn.GELU(),
                                        nn.Conv2d(64, 1, 3, padding=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, gate = self.splitconv(x).chunk(2, dim=1)
        return F.gelu(features) * self.weight_blk(gate)


class TopiqIaa(nn.Module):
    """TOPIQ-IAA (pyiqa's CFANet as ``topiq_iaa``): float RGB frames in [0, 1], (n, 3, H, W) -> the
    score of each, (n,). Module names follow the published state dict but for the backbone
    (torchvision's ``features``; ``load_topiq_iaa`` maps the names)."""

    def __init__(self):
        super().__init__()
        self.backbone = torchvision.models.SwinTransformer(**SWIN, stochastic_depth_prob=0.0).features
        self.weight_pool = nn.ModuleList(_GatedPooling(c) for c in LEVEL_CHANNELS)
        self.dim_reduce = nn.ModuleList(nn.Sequential(nn.Conv2d(c, INTER_DIM, 1), nn.GELU()) for c in LEVEL_CHANNELS)
        self.sa_attn_blks = nn.ModuleList(_Stack(_EncoderLayer()) for _ in LEVEL_CHANNELS)
        self.attn_blks = nn.ModuleList(_Stack(_DecoderLayer()) for _ in LEVEL_CHANNELS[1:])
        self.attn_pool = _EncoderLayer()
        self.score_linear = nn.Sequential(nn.LayerNorm(INTER_DIM), nn.Linear(INTER_DIM, INTER_DIM), nn.GELU(),
                                          nn.LayerNorm(INTER_DIM), nn.Linear(INTER_DIM, INTER_DIM), nn.GELU(),
                                          nn.Linear(INTER_DIM, CLASSES), nn.Softmax(dim=-1))
        self.h_emb = nn.Parameter(torch.zeros(1, INTER_DIM // 2, POSITION_GRID, 1))
        self.w_emb = nn.Parameter(torch.zeros(1, INTER_DIM // 2, 1, POSITION_GRID))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's four feature maps, (n, C, h, w) each, finest first."""
        out = []
        for i, module in enumerate(self.backbone):
            x = module(x)
            if i in LEVELS:
                out.append(x.permute(0, 3, 1, 2))
        return out

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
        levels = self.levels((x - self.mean) / self.std)
        grid = levels[-1].shape[2:]
        position = torch.cat((self.h_emb.expand(-1, -1, -1, POSITION_GRID),
                              self.w_emb.expand(-1, -1, POSITION_GRID, -1)), dim=1)
        tokens = []
        for i in reversed(range(len(levels))):
            feature = self.weight_pool[i](levels[i])
            if feature.shape[2] > grid[0] and feature.shape[3] > grid[1]:
                feature = F.adaptive_avg_pool2d(feature, grid)
            pos = F.interpolate(position, size=feature.shape[2:], mode="bicubic", align_corners=False)
            feature = self.dim_reduce[i](feature).flatten(2).permute(2, 0, 1) + pos.flatten(2).permute(2, 0, 1)
            tokens.append(self.sa_attn_blks[i](feature))
        query = tokens[0]
        for block, memory in zip(self.attn_blks, tokens[1:], strict=True):
            query = block(query, memory)
        probabilities = self.score_linear(self.attn_pool(query).mean(dim=0))
        return (probabilities * torch.arange(1, CLASSES + 1, dtype=probabilities.dtype,
                                             device=probabilities.device)).sum(dim=-1)


# The published backbone's names (pyiqa's timm Swin) -> torchvision's ``features``; its final norm, its
# classifier, the decoder layers' unused self-attention and the precomputed buffers are not read.
_BACKBONE_NAMES = ((re.compile(r"patch_embed\.proj\.(.+)"), r"0.0.\1"),
                   (re.compile(r"patch_embed\.norm\.(.+)"), r"0.2.\1"),
                   (re.compile(r"layers\.(\d+)\.blocks\.(\d+)\.mlp\.fc1\.(.+)"), "{block}.mlp.0.\\3"),
                   (re.compile(r"layers\.(\d+)\.blocks\.(\d+)\.mlp\.fc2\.(.+)"), "{block}.mlp.3.\\3"),
                   (re.compile(r"layers\.(\d+)\.blocks\.(\d+)\.(.+)"), "{block}.\\3"),
                   (re.compile(r"layers\.(\d+)\.downsample\.(.+)"), "{merge}.\\2"))
_UNUSED = re.compile(r"semantic_model\.(norm|head)\.|.*\.(relative_position_index|attn_mask)$|"
                     r"attn_blks\.\d+\.layers\.0\.self_attn\.")


def _backbone_name(name: str) -> str | None:
    for pattern, target in _BACKBONE_NAMES:
        match = pattern.fullmatch(name)
        if match:
            stage = int(match.group(1)) if name.startswith("layers.") else 0
            target = target.replace("{block}", f"{2 * stage + 1}.\\2").replace("{merge}", str(2 * stage + 2))
            return match.expand(target)
    return None


def convert_state(state: dict, path: Path) -> dict:
    """pyiqa's CFANet state dict (``params`` of the published file) in ``TopiqIaa``'s names."""
    out, unknown = {}, []
    for key, value in state.items():
        key = key.removeprefix("module.")
        if _UNUSED.match(key):
            continue
        if key.startswith("semantic_model."):
            name = _backbone_name(key.removeprefix("semantic_model."))
            if name is None:
                unknown.append(key)
                continue
            key = "backbone." + name
        out[key] = value
    if unknown:
        raise LipsyncBenchError(f"{path}: not pyiqa's TOPIQ-IAA (cfanet_iaa_ava_swin) layout (unknown backbone "
                                f"keys, e.g. {unknown[:2]})")
    return out


def load_topiq_iaa(path: str | Path, device: torch.device | str = "cpu") -> TopiqIaa:
    """TOPIQ-IAA with the weights of ``path`` (pyiqa's published file: ``{"params": state dict}``, or the
    state dict itself), loaded safely once per process and device.

    Args:
        path: the weights file, e.g. ``cfanet_iaa_ava_swin-393b41b4.pth``.
        device: where the network runs.

    Returns:
        The network in eval mode.

    Example:
        >>> load_topiq_iaa("/no/such/file.pth")
        Traceback (most recent call last):
        ...
        lipsync_bench.errors.MetricError: /no/such/file.pth: cannot be loaded as TOPIQ-IAA weights (...)
    """
    path = Path(path)
    key = (str(path.resolve()), weights.sha256(path) if path.is_file() else None, str(device))
    if key not in _MODELS:
        try:  # a bad file fails this metric, the others go on
            checkpoint = read_checkpoint(path, "TOPIQ-IAA weights")
            state = checkpoint.get("params", checkpoint) if isinstance(checkpoint, dict) else None
            if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
                raise LipsyncBenchError(f"{path}: holds no state dict (pyiqa's layout: {{'params': state dict}})")
            model = TopiqIaa()
            own = model.state_dict()
            state = convert_state(state, path)
            state.update({k: v for k, v in own.items() if k.endswith("relative_position_index")})
            load_state(model, state, path, "pyiqa's TOPIQ-IAA (cfanet_iaa_ava_swin)")
            _MODELS[key] = model.to(device).eval()
        except LipsyncBenchError as exc:
            raise MetricError(str(exc)) from None
    return _MODELS[key]


def topiq_iaa_scores(network: TopiqIaa, frames: torch.Tensor, batch: int | None = None) -> torch.Tensor:
    """TOPIQ-IAA scores of uint8 RGB frames (n, H, W, 3), as THEval's ``ToTensor`` gives them to pyiqa,
    -> float64 (n,), on the frames' device.

    Args:
        network: ``load_topiq_iaa``'s network (on the frames' device).
        frames: uint8 RGB frames, (n, H, W, 3).
        batch: frames scored at once (default: 64 on a GPU, 4 on CPU).

    Returns:
        The score of each frame (1 to 10).

    Example:
        >>> frames = torch.full((1, 64, 48, 3), 128, dtype=torch.uint8)
        >>> topiq_iaa_scores(TopiqIaa(), frames).shape
        torch.Size([1])
    """
    batch = batch or (THEVAL_BATCH if frames.device.type != "cpu" else CPU_BATCH)
    out = []
    for i in range(0, frames.shape[0], batch):
        x = frames[i:i + batch].permute(0, 3, 1, 2).to(torch.float32).div(255)
        out.append(network(x).to(torch.float64))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64, device=frames.device)


class _GlobalAesthetic(Accumulator):
    def __init__(self, params: dict, ctx: MetricContext):
        self.network = load_topiq_iaa(ctx.weights_path, ctx.device)
        self.ctx = ctx
        self.scores: list[float] = []

    def update(self, batch: FrameBatch) -> None:
        self.scores += topiq_iaa_scores(self.network, batch.gen_full).cpu().tolist()

    def result(self) -> MetricValue:
        if not self.scores:
            raise MetricError(f"{self.ctx.gen}: no frames")
        return MetricValue(sum(self.scores) / len(self.scores), len(self.scores),
                           details=per_frame_details(self.scores))


def make_accumulator(params: dict, ctx: MetricContext) -> Accumulator:
    """The accumulator of ``theval_global_aesthetic`` (``declarations.THEVAL_GLOBAL_AESTHETIC``)."""
    return _GlobalAesthetic(params, ctx)


def unavailable(reason: str, params: dict, ctx: MetricContext) -> Accumulator:
    """THEval's mouth and face quality: always unavailable, saying why (``declarations``)."""
    raise UnavailableError(reason)
