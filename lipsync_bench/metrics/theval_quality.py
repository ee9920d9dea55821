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

``theval_mouth_quality`` (mouth_quality.py): ``pyiqa.create_metric("musiq")`` (KonIQ-10k) on mouth crops.
Each decoded RGB frame goes through a static-image face mesh (mp FaceMesh(static_image_mode=True), one face,
refine_landmarks False: ``faces.mediapipe_mesh``); frames without a face are skipped. The crop is PIL's crop
of the box of mediapipe's 40 FACEMESH_LIPS points at int(x * width), int(y * height), 10 pixels added each
side and clipped to the frame. THEval scores the crops in batches of 64, each batch's crops zero-padded at
the bottom and right to its largest width and height (``pad_batch`` 64; the default 0 scores each crop at its
own size, as the padding makes a crop's score depend on its neighbours). The video's value is the mean.
MUSIQ (Ke et al., ICCV 2021) as pyiqa's musiq_arch builds it:

- the image in [0, 1] is mapped to [-1, 1], then resized (bicubic, align_corners False, no antialiasing) so
  that its longer side is 224, then 384, each side round(side * ratio); each of those and the image itself
  is zero-padded TensorFlow-"SAME" to whole 32x32 patches, cut row by row, and each patch gets a hashed
  position (its row and column resampled nearest to a 10x10 grid) and its scale's index (0, 1, 2); the two
  resized scales' sequences are padded with masked zero patches to 49 and 144 tokens;
- each patch goes through a ResNet root (weight-standardised 7x7/2 convolution, group norm, ReLU, 3x3/2
  max pool, "SAME" padding) and one bottleneck (64 -> 256 channels), its 8x8x256 features (channels last)
  through a linear embedding to 384; the position and scale embeddings are added, a class token put first;
- 14 pre-norm transformer layers (6 heads, MLP 1152, exact GELU, LayerNorm eps 1e-6; a logit between a
  padded token and any other is replaced by -1000), a final LayerNorm, and a linear head on the class
  token: the score (KonIQ-10k's scale, about 0 to 100, higher is better).

The weights are pyiqa's published ``musiq_koniq_ckpt-e95806b9.pth`` (a plain state dict), read safely and
never downloaded at evaluation time (``--param theval_mouth_quality.weights=FILE`` for another).

``theval_face_quality`` (TOPIQ-NR-Face) is declared but not available (``declarations``).
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from .. import weights
from ..checkpoints import load_state, read_checkpoint
from ..errors import LipsyncBenchError, MetricError, UnavailableError
from ..faces import mediapipe_mesh
from .declarations import theval_weights_file
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
    def build(state: dict, path: Path) -> TopiqIaa:
        model = TopiqIaa()
        state = convert_state(state, path)
        state.update({k: v for k, v in model.state_dict().items() if k.endswith("relative_position_index")})
        load_state(model, state, path, "pyiqa's TOPIQ-IAA (cfanet_iaa_ava_swin)")
        return model

    return _cached_network(_MODELS, path, device, "TOPIQ-IAA weights", "{'params': state dict}", build)


def _cached_network(cache: dict, path: str | Path, device, what: str, layout: str, build: Callable) -> nn.Module:
    """A network built (``build(state, path)``) from a pyiqa weights file (its ``params`` entry, else the
    file's state dict), once per file, content and device; a bad file is this metric's error (the
    others go on)."""
    path = Path(path)
    key = (str(path.resolve()), weights.sha256(path) if path.is_file() else None, str(device))
    if key not in cache:
        try:
            checkpoint = read_checkpoint(path, what)
            state = checkpoint.get("params", checkpoint) if isinstance(checkpoint, dict) else None
            if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
                raise LipsyncBenchError(f"{path}: holds no state dict (pyiqa's layout: {layout})")
            cache[key] = build(state, path).to(device).eval()
        except LipsyncBenchError as exc:
            raise MetricError(str(exc)) from None
    return cache[key]


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


# --------------------------------------------------------------------------------------------------
# MUSIQ (pyiqa's musiq, KonIQ-10k) and THEval's mouth crops

#: MUSIQ's patches (pixels a side), hashed position grid, resized longer sides and transformer sizes
#: (pyiqa's MUSIQ defaults, which create_metric("musiq") keeps).
MUSIQ_PATCH = 32
MUSIQ_GRID = 10
MUSIQ_SCALES = (224, 384)
MUSIQ_DIM = 384
MUSIQ_MLP = 1152
MUSIQ_HEADS = 6
MUSIQ_LAYERS = 14
#: The stem's channels (a ResNet root and one bottleneck to 4x as many).
MUSIQ_STEM = 64
#: What a masked attention logit is replaced with (not -inf).
MUSIQ_MASKED = -1e3
#: THEval's 40 lip points (mediapipe's FACEMESH_LIPS) and the pixels added around their box.
MOUTH_POINTS = (0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191,
                267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415)
MOUTH_PADDING = 10
#: Crops scored at once on CPU (a crop is some 200 patches through the stem).
MUSIQ_CPU_BATCH = 4

_MUSIQ: dict[tuple, nn.Module] = {}
_MOUTH_MESH: list = []


def _same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow's "SAME" zero padding of (n, c, h, w) for a kernel and stride (the odd pixel after)."""
    pads = []
    for size in (x.shape[3], x.shape[2]):
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class _StdConv(nn.Conv2d):
    """A convolution with standardised weights (each filter: minus its mean, over its std + 1e-5) and
    TensorFlow's "SAME" padding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight - self.weight.mean((1, 2, 3), keepdim=True)
        w = w / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return F.conv2d(_same_pad(x, self.kernel_size[0], self.stride[0]), w, self.bias, self.stride)


class _Bottleneck(nn.Module):
    """1x1, 3x3, 1x1 standardised convolutions with group norms (32 groups, eps 1e-4), 64 -> 256
    channels, a projected shortcut."""

    def __init__(self, dim: int, out: int):
        super().__init__()
        self.conv1, self.conv2 = _StdConv(dim, dim, 1, bias=False), _StdConv(dim, dim, 3, bias=False)
        self.conv3, self.conv_proj = _StdConv(dim, out, 1, bias=False), _StdConv(dim, out, 1, bias=False)
        self.gn1, self.gn2 = nn.GroupNorm(32, dim, eps=1e-4), nn.GroupNorm(32, dim, eps=1e-4)
        self.gn3, self.gn_proj = nn.GroupNorm(32, out, eps=1e-4), nn.GroupNorm(32, out, eps=1e-4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.gn_proj(self.conv_proj(x))
        x = F.relu(self.gn1(self.conv1(x)))
        x = F.relu(self.gn2(self.conv2(x)))
        return F.relu(self.gn3(self.conv3(x)) + shortcut)


class _Attention(nn.Module):
    """Multi-head self-attention whose masked logits (either token padding) become ``MUSIQ_MASKED``."""

    def __init__(self):
        super().__init__()
        self.query, self.key, self.value, self.out = (nn.Linear(MUSIQ_DIM, MUSIQ_DIM) for _ in range(4))

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = (f(x).view(n, length, MUSIQ_HEADS, -1).transpose(1, 2) for f in (self.query, self.key, self.value))
        logits = (q @ k.transpose(-2, -1)) * (dim // MUSIQ_HEADS) ** -0.5
        logits = logits.masked_fill(~(valid[:, None] & valid[None, :]), MUSIQ_MASKED)
        return self.out((logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(n, length, dim))


class _Block(nn.Module):
    """Pre-norm (eps 1e-6) attention and MLP (exact GELU), each residual."""

    def __init__(self):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(MUSIQ_DIM, eps=1e-6), nn.LayerNorm(MUSIQ_DIM, eps=1e-6)
        self.attention = _Attention()
        self.mlp = nn.Module()
        self.mlp.fc1, self.mlp.fc2 = nn.Linear(MUSIQ_DIM, MUSIQ_MLP), nn.Linear(MUSIQ_MLP, MUSIQ_DIM)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), valid)
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))


def _hashed_index(count: int) -> torch.Tensor:
    """The position-grid row (or column) of each of ``count`` patches: nearest-neighbour resampling of
    0..9 to ``count`` (torch's "nearest", on CPU as pyiqa computes it)."""
    grid = torch.arange(MUSIQ_GRID, dtype=torch.float32).view(1, 1, -1)
    return F.interpolate(grid, size=count, mode="nearest").view(-1).long()


def _patches(x: torch.Tensor, scale: int, length: int | None):
    """Non-overlapping 32x32 patches of (n, 3, h, w) after "SAME" padding, row by row: (n, L, 3, 32, 32),
    with each patch's hashed position, scale index and validity, (L,) each; zero patches (position 0,
    scale 0, invalid) pad the sequence to ``length`` (None: no padding; a resized scale never has more)."""
    n, c, h, w = x.shape
    rows, cols = math.ceil(h / MUSIQ_PATCH), math.ceil(w / MUSIQ_PATCH)
    x = _same_pad(x, MUSIQ_PATCH, MUSIQ_PATCH).view(n, c, rows, MUSIQ_PATCH, cols, MUSIQ_PATCH)
    patches = x.permute(0, 2, 4, 1, 3, 5).reshape(n, rows * cols, c, MUSIQ_PATCH, MUSIQ_PATCH)
    position = (_hashed_index(rows)[:, None] * MUSIQ_GRID + _hashed_index(cols)[None, :]).view(-1)
    scales = torch.full_like(position, scale)
    valid = torch.ones_like(position, dtype=torch.bool)
    if length is not None and length > rows * cols:
        extra = length - rows * cols
        patches = torch.cat([patches, patches.new_zeros(n, extra, c, MUSIQ_PATCH, MUSIQ_PATCH)], dim=1)
        position, scales = (torch.cat([t, t.new_zeros(extra)]) for t in (position, scales))
        valid = torch.cat([valid, valid.new_zeros(extra)])
    return patches, position, scales, valid


def multiscale_patches(x: torch.Tensor):
    """MUSIQ's input of (n, 3, h, w) images in [-1, 1]: the image resized so that its longer side is 224,
    then 384 (aspect ratio kept: sides round(side * ratio); bicubic, align_corners False, no
    antialiasing), each cut into patches padded to (ceil(side / 32))^2 tokens, then the image as it is,
    all its patches (scale index 2). Returns patches (n, L, 3, 32, 32) and positions, scale indices and
    validity (L,), the same for every image of the batch (they share a size)."""
    n, _, h, w = x.shape
    parts = []
    for scale, longer in enumerate(sorted(MUSIQ_SCALES)):
        ratio = longer / max(h, w)
        resized = F.interpolate(x, size=(round(h * ratio), round(w * ratio)), mode="bicubic", align_corners=False)
        parts.append(_patches(resized, scale, math.ceil(longer / MUSIQ_PATCH) ** 2))
    parts.append(_patches(x, len(MUSIQ_SCALES), None))
    return tuple(torch.cat(t, dim=1 if i == 0 else 0) for i, t in enumerate(zip(*parts, strict=True)))


class Musiq(nn.Module):
    """MUSIQ (Ke et al., "MUSIQ: Multi-scale Image Quality Transformer", ICCV 2021) as pyiqa's ``musiq``
    builds it for KonIQ-10k (one output, the score): float RGB images in [0, 1] of one size, (n, 3, h, w)
    -> the score of each, (n,). Module names follow pyiqa's state dict."""

    def __init__(self):
        super().__init__()
        self.conv_root = _StdConv(3, MUSIQ_STEM, 7, stride=2, bias=False)
        self.gn_root = nn.GroupNorm(32, MUSIQ_STEM, eps=1e-6)
        self.block1 = _Bottleneck(MUSIQ_STEM, 4 * MUSIQ_STEM)
        self.embedding = nn.Linear(4 * MUSIQ_STEM * (MUSIQ_PATCH // 4) ** 2, MUSIQ_DIM)
        encoder = self.transformer_encoder = nn.Module()
        encoder.posembed_input, encoder.scaleembed_input = nn.Module(), nn.Module()
        encoder.posembed_input.position_emb = nn.Parameter(torch.zeros(1, MUSIQ_GRID ** 2, MUSIQ_DIM))
        encoder.scaleembed_input.scale_emb = nn.Parameter(torch.zeros(len(MUSIQ_SCALES) + 1, MUSIQ_DIM))
        encoder.cls = nn.Parameter(torch.zeros(1, 1, MUSIQ_DIM))
        encoder.encoder_norm = nn.LayerNorm(MUSIQ_DIM, eps=1e-6)
        encoder.transformer = nn.ModuleDict({f"encoderblock_{i}": _Block() for i in range(MUSIQ_LAYERS)})
        self.head = nn.Linear(MUSIQ_DIM, 1)
        self.eval()

    def stem(self, patches: torch.Tensor) -> torch.Tensor:
        """(m, 3, 32, 32) patches -> (m, 384) tokens: root convolution 7x7/2, group norm, ReLU, max pool
        3x3/2 ("SAME"), the bottleneck, the 8x8x256 features flattened channels last, the embedding."""
        x = F.relu(self.gn_root(self.conv_root(patches)))
        x = self.block1(F.max_pool2d(_same_pad(x, 3, 2), 3, 2))
        return self.embedding(x.permute(0, 2, 3, 1).reshape(x.shape[0], -1))

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches, position, scales, valid = multiscale_patches((x - 0.5) * 2)
        device = x.device
        n, length = patches.shape[:2]
        encoder = self.transformer_encoder
        tokens = self.stem(patches.reshape(n * length, *patches.shape[2:])).view(n, length, MUSIQ_DIM)
        tokens = tokens + encoder.posembed_input.position_emb[0][position.to(device)]
        tokens = tokens + encoder.scaleembed_input.scale_emb[scales.to(device)]
        tokens = torch.cat([encoder.cls.expand(n, -1, -1), tokens], dim=1)
        valid = torch.cat([valid.new_ones(1), valid]).to(device)
        for block in encoder.transformer.values():
            tokens = block(tokens, valid)
        return self.head(encoder.encoder_norm(tokens)[:, 0])[:, 0]


def load_musiq(path: str | Path, device: torch.device | str = "cpu") -> Musiq:
    """MUSIQ with the weights of ``path`` (pyiqa's published file: the state dict itself, or
    ``{"params": state dict}``), loaded safely once per process and device.

    Args:
        path: the weights file, e.g. ``musiq_koniq_ckpt-e95806b9.pth``.
        device: where the network runs.

    Returns:
        The network in eval mode.

    Example:
        >>> load_musiq("/no/such/file.pth")
        Traceback (most recent call last):
        ...
        lipsync_bench.errors.MetricError: /no/such/file.pth: cannot be loaded as MUSIQ weights (...)
    """
    def build(state: dict, path: Path) -> Musiq:
        model = Musiq()
        load_state(model, {k.removeprefix("module."): v for k, v in state.items()}, path,
                   "pyiqa's MUSIQ (musiq_koniq_ckpt)")
        return model

    return _cached_network(_MUSIQ, path, device, "MUSIQ weights", "the state dict itself", build)


def musiq_scores(network: Musiq, crops: list[np.ndarray], pad: bool, batch: int | None = None) -> torch.Tensor:
    """MUSIQ scores of uint8 RGB crops (h, w, 3), as THEval's ``ToTensor`` gives them to pyiqa, -> float64
    (n,) on the CPU.

    Args:
        network: ``load_musiq``'s network.
        crops: the crops, of any sizes.
        pad: THEval's quirk: each crop zero-padded at the bottom and right to the largest width and
            height among ``crops`` (give one batch of 64); else each scored at its own size.
        batch: crops run through the network at once (default: all on a GPU, 4 on CPU); it does not
            change a score.

    Returns:
        The score of each crop (KonIQ-10k's scale, about 0 to 100).

    Example:
        >>> crop = np.full((40, 70, 3), 128, dtype=np.uint8)
        >>> musiq_scores(Musiq(), [crop], pad=True).shape
        torch.Size([1])
    """
    device = next(network.parameters()).device
    batch = batch or (len(crops) if device.type != "cpu" else MUSIQ_CPU_BATCH)
    if pad and crops:
        height, width = max(c.shape[0] for c in crops), max(c.shape[1] for c in crops)
        canvas = [np.zeros((height, width, 3), np.uint8) for _ in crops]
        for image, crop in zip(canvas, crops, strict=True):
            image[:crop.shape[0], :crop.shape[1]] = crop
        crops = canvas
    out = torch.zeros(len(crops), dtype=torch.float64)
    by_size: dict[tuple, list[int]] = {}
    for i, crop in enumerate(crops):
        by_size.setdefault(crop.shape, []).append(i)
    for rows in by_size.values():
        for start in range(0, len(rows), batch):
            part = rows[start:start + batch]
            x = torch.from_numpy(np.stack([crops[i] for i in part])).to(device)
            out[part] = network(x.permute(0, 3, 1, 2).to(torch.float32).div(255)).double().cpu()
    return out


def mouth_box(points: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """THEval's mouth box from a face mesh (normalised x / width, y / height): the bounding box of
    ``MOUTH_POINTS`` at int(x * width), int(y * height) (truncated), 10 pixels added each side and
    clipped to the frame: (left, top, right, bottom), right and bottom excluded (PIL's crop box)."""
    lips = np.asarray(points, dtype=np.float32)[list(MOUTH_POINTS), :2].astype(np.float64)
    xs, ys = (lips[:, 0] * width).astype(np.int64), (lips[:, 1] * height).astype(np.int64)
    return (max(int(xs.min()) - MOUTH_PADDING, 0), max(int(ys.min()) - MOUTH_PADDING, 0),
            min(int(xs.max()) + MOUTH_PADDING, width), min(int(ys.max()) + MOUTH_PADDING, height))


def crop_box(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """PIL's ``Image.crop``: the pixels of ``box`` (left, top, right, bottom), zeros where it leaves
    the frame."""
    left, top, right, bottom = box
    if right <= left or bottom <= top:
        raise MetricError(f"empty mouth crop {box} (the lips lie outside the frame)")
    out = np.zeros((bottom - top, right - left, 3), np.uint8)
    h, w = frame.shape[:2]
    y0, y1, x0, x1 = max(top, 0), min(bottom, h), max(left, 0), min(right, w)
    if y1 > y0 and x1 > x0:
        out[y0 - top:y1 - top, x0 - left:x1 - left] = frame[y0:y1, x0:x1]
    return out


def _mouth_mesh():
    """THEval's mp FaceMesh(static_image_mode=True) (one face, refine_landmarks False, thresholds 0.5):
    stateless, one per process."""
    if not _MOUTH_MESH:
        _MOUTH_MESH.append(mediapipe_mesh.FaceMeshTracker(refine_landmarks=False, static_image_mode=True))
    return _MOUTH_MESH[0]


def mouth_files() -> list[str]:
    """The weights names of the face mesh's model files (detector and 468-point mesh)."""
    return [mediapipe_mesh.DETECTOR, mediapipe_mesh.MESH]


def mouth_weights(params: dict) -> list[tuple[Path, dict]]:
    """The files mouth quality loads, MUSIQ's first (``--param theval_mouth_quality.weights``, else
    ``musiq-koniq`` from the weights folder), then the face mesh's."""
    return [theval_weights_file("theval_mouth_quality", MUSIQ_WEIGHTS, params["weights"])] + [
        (found, weights.describe(name, found)) for name in mouth_files()
        for found in [mediapipe_mesh.require_model(name)]]


def mouth_available(params: dict) -> str | None:
    """None when mouth quality runs here (MUSIQ's and the mesh's files found), else why not."""
    try:
        mouth_weights(params)
    except UnavailableError as exc:
        return str(exc)
    return None


#: The weights entry of MUSIQ (KonIQ-10k).
MUSIQ_WEIGHTS = "musiq-koniq"


class _MouthQuality(Accumulator):
    def __init__(self, params: dict, ctx: MetricContext):
        self.network = load_musiq(ctx.weights_path, ctx.device)
        self.mesh = _mouth_mesh()
        self.pad_batch = int(params["pad_batch"])
        self.ctx = ctx
        self.pending: list[np.ndarray] = []
        self.scores: list[float] = []
        self.frames = self.faceless = 0

    def update(self, batch: FrameBatch) -> None:
        for frame in batch.gen_full.cpu().numpy():
            self.frames += 1
            points = self.mesh.process(frame)
            if points is None:  # THEval: the frame is passed over
                self.faceless += 1
                continue
            self.pending.append(crop_box(frame, mouth_box(points, frame.shape[1], frame.shape[0])))
            if len(self.pending) >= max(self.pad_batch, 1):
                self._score()

    def _score(self) -> None:
        if self.pending:
            self.scores += musiq_scores(self.network, self.pending, pad=self.pad_batch > 0).tolist()
            self.pending = []

    def result(self) -> MetricValue:
        self._score()
        if not self.scores:
            raise MetricError(f"{self.ctx.gen}: no face in any of its {self.frames} frames")
        warnings = [f"{self.faceless} of {self.frames} frames without a face, left out"] if self.faceless else []
        return MetricValue(sum(self.scores) / len(self.scores), len(self.scores), warnings=warnings,
                           details=per_frame_details(self.scores))


def make_mouth_accumulator(params: dict, ctx: MetricContext) -> Accumulator:
    """The accumulator of ``theval_mouth_quality`` (``declarations.THEVAL_MOUTH_QUALITY``)."""
    return _MouthQuality(params, ctx)


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
    """THEval's face quality: always unavailable, saying why (``declarations``)."""
    raise UnavailableError(reason)
