"""S3FD (Zhang et al., ICCV 2017) as syncnet_python's pipeline runs it (``detectors/s3fd``, the weights
``sfd_face.pth``), the face detector of the field's LSE on real videos (syncnet_python's
``run_pipeline.py``, Wav2Lip's real-video script, LatentSync's ``eval_sync_conf.py``, MoChaBench and
the ``syncnet-python`` package).

- Input: each RGB frame resized by ``scale`` (0.25 in the pipelines) with OpenCV's bilinear resize,
  float32 minus the per-channel mean 123, 117, 104 (R, G, B): the reference subtracts the BGR mean
  (104, 117, 123) from a BGR copy and swaps back, so the network sees RGB.
- Network (``S3FDNet``, the state dict of ``sfd_face.pth``: ``vgg.N``, ``L2Norm3_3`` ..., ``extras.N``,
  ``loc.N``, ``conf.N``): VGG-16 to conv5_3 (the pool after conv3_3 rounds up), fc6 a 3x3
  convolution of dilation 6, fc7 1x1; conv3_3, conv4_3 and conv5_3 L2-normalised with learnt scales
  (initially 10, 8, 5); two extra stages; six heads of box offsets and face/background scores, the
  first of which keeps the largest of three background channels ("max-out"). 22,459,110 parameters.
- Anchors: one square a cell, of side 16, 32, ... 512 input pixels on strides 4, 8, ... 128, not
  clipped; offsets decoded with variances 0.1 and 0.2 (SSD's).
- Detections: face scores above 0.05, the 5,000 highest, greedy non-maximum suppression above 0.3
  IoU (areas without the +1 pixel), the 750 best; of those, scores above ``conf_th`` (0.9), scaled to
  the original frame's pixels (not clipped); then a second suppression above 0.1 IoU over all scales.
  Rows (x1, y1, x2, y2, score), best first.

``detect`` runs a chunk of frames through the network as one batch. The weights are placed by hand
(``lipsync-bench weights list``: ``sfd_face.pth``); they are a different file, and a different network,
from face-alignment's ``s3fd-619a316812.pth`` (its fc6 has no dilation, its pool after conv3_3 rounds
down, it reads BGR), which is therefore not accepted in its place.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import weights
from ..checkpoints import load_state, read_checkpoint, state_dict_of
from ..errors import LipsyncBenchError

#: The mean the reference subtracts, in the RGB order the network sees.
MEAN_RGB = (123.0, 117.0, 104.0)
STEPS = (4, 8, 16, 32, 64, 128)
MIN_SIZES = (16, 32, 64, 128, 256, 512)
VARIANCES = (0.1, 0.2)
SCORE_FLOOR = 0.05
NMS_TOP_K = 5000
NMS_IOU = 0.3
TOP_K = 750
FINAL_NMS_IOU = 0.1
#: The pipelines' settings (run_pipeline.py's --facedet_scale 0.25, detect_faces(conf_th=0.9)).
SCALE = 0.25
CONF_TH = 0.9

# VGG-16 as the reference's ModuleList: ("c", in, out, padding, dilation), ("r",) ReLU, ("p", ceil_mode) pool
_VGG = [("c", 3, 64, 1, 1), ("r",), ("c", 64, 64, 1, 1), ("r",), ("p", False),
        ("c", 64, 128, 1, 1), ("r",), ("c", 128, 128, 1, 1), ("r",), ("p", False),
        ("c", 128, 256, 1, 1), ("r",), ("c", 256, 256, 1, 1), ("r",), ("c", 256, 256, 1, 1), ("r",), ("p", True),
        ("c", 256, 512, 1, 1), ("r",), ("c", 512, 512, 1, 1), ("r",), ("c", 512, 512, 1, 1), ("r",), ("p", False),
        ("c", 512, 512, 1, 1), ("r",), ("c", 512, 512, 1, 1), ("r",), ("c", 512, 512, 1, 1), ("r",), ("p", False),
        ("c", 512, 1024, 6, 6), ("r",), ("fc7",), ("r",)]
#: Where the sources are taken: after module 15 (conv3_3's ReLU), 22 (conv4_3), 29 (conv5_3), 34 (fc7).
_SOURCES = (15, 22, 29, 34)


def _vgg_layer(spec) -> nn.Module:
    if spec[0] == "c":
        _, cin, cout, padding, dilation = spec
        return nn.Conv2d(cin, cout, 3, 1, padding=padding, dilation=dilation)
    if spec[0] == "fc7":
        return nn.Conv2d(1024, 1024, 1, 1)
    if spec[0] == "p":
        return nn.MaxPool2d(2, 2, ceil_mode=spec[1])
    return nn.ReLU(inplace=True)


class L2Norm(nn.Module):
    """Channel-wise unit norm (plus 1e-10) times a learnt scale per channel."""

    def __init__(self, channels: int, scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10
        return self.weight[None, :, None, None] * (x / norm)


class S3FDNet(nn.Module):
    """The network of ``sfd_face.pth``, in its state-dict layout. ``forward`` takes (n, 3, h, w) float
    RGB minus ``MEAN_RGB`` and gives box offsets (n, P, 4), face/background probabilities (n, P, 2) and
    the six feature-map sizes the anchors are laid on."""

    def __init__(self):
        super().__init__()
        self.vgg = nn.ModuleList([_vgg_layer(spec) for spec in _VGG])
        self.L2Norm3_3 = L2Norm(256, 10)
        self.L2Norm4_3 = L2Norm(512, 8)
        self.L2Norm5_3 = L2Norm(512, 5)
        self.extras = nn.ModuleList([nn.Conv2d(1024, 256, 1, 1), nn.Conv2d(256, 512, 3, 2, padding=1),
                                     nn.Conv2d(512, 128, 1, 1), nn.Conv2d(128, 256, 3, 2, padding=1)])
        channels = (256, 512, 512, 1024, 512, 256)
        self.loc = nn.ModuleList([nn.Conv2d(c, 4, 3, 1, padding=1) for c in channels])
        self.conf = nn.ModuleList([nn.Conv2d(c, 4 if k == 0 else 2, 3, 1, padding=1) for k, c in enumerate(channels)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        sources = []
        norms = {_SOURCES[0]: self.L2Norm3_3, _SOURCES[1]: self.L2Norm4_3, _SOURCES[2]: self.L2Norm5_3}
        for k, layer in enumerate(self.vgg):
            x = layer(x)
            if k in norms:
                sources.append(norms[k](x))
        sources.append(x)  # fc7
        for k, layer in enumerate(self.extras):
            x = F.relu(layer(x))
            if k % 2 == 1:
                sources.append(x)
        locs, confs, maps = [], [], []
        for k, (source, loc, conf) in enumerate(zip(sources, self.loc, self.conf, strict=True)):
            c = conf(source)
            if k == 0:  # max-out background: the largest of the first three channels
                c = torch.cat([c[:, :3].max(dim=1, keepdim=True)[0], c[:, 3:]], dim=1)
            maps.append((source.shape[2], source.shape[3]))
            locs.append(loc(source).permute(0, 2, 3, 1).reshape(x.shape[0], -1, 4))
            confs.append(c.permute(0, 2, 3, 1).reshape(x.shape[0], -1, 2))
        return torch.cat(locs, 1), F.softmax(torch.cat(confs, 1), dim=-1), maps


def prior_boxes(height: int, width: int, maps: list[tuple[int, int]]) -> torch.Tensor:
    """(P, 4) anchors (cx, cy, w, h) in [0, 1] of the network's input, in the heads' order (map by map,
    row-major): computed in float64 and stored as float32, as the reference does."""
    out = []
    for (fh, fw), step, size in zip(maps, STEPS, MIN_SIZES, strict=True):
        i, j = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")
        cx = (j.ravel() + 0.5) / (width / step)
        cy = (i.ravel() + 0.5) / (height / step)
        out.append(np.stack([cx, cy, np.full(cx.shape, size / width), np.full(cx.shape, size / height)], 1))
    return torch.from_numpy(np.concatenate(out).astype(np.float32))


def decode(loc: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """SSD's decoding of offsets against anchors: (P, 4) corners x1, y1, x2, y2 in [0, 1] of the input
    (the same float32 operations, in the same order, as the reference)."""
    centre = priors[:, :2] + loc[:, :2] * VARIANCES[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[:, 2:] * VARIANCES[1])
    first = centre - size / 2
    return torch.cat([first, size + first], 1)


def greedy_nms(boxes: torch.Tensor, order: torch.Tensor, iou: float) -> list[int]:
    """Indices kept by greedy suppression, in ``order``'s order: a box is dropped when its overlap with
    a kept one is above ``iou`` (intersection over union, areas without the +1 pixel)."""
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1) * (y2 - y1)
    keep = []
    while order.numel():
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = (torch.minimum(x2[rest], x2[i]) - torch.maximum(x1[rest], x1[i])).clamp(min=0)
        h = (torch.minimum(y2[rest], y2[i]) - torch.maximum(y1[rest], y1[i])).clamp(min=0)
        inter = w * h
        order = rest[inter / (area[rest] - inter + area[i]) <= iou]
    return keep


def frame_detections(loc: torch.Tensor, prob: torch.Tensor, priors: torch.Tensor, width: int, height: int,
                     conf_th: float) -> np.ndarray:
    """One frame's detections above ``conf_th`` in its own pixels, (k, 5) x1, y1, x2, y2, score (best
    first), from the network's outputs for it."""
    boxes = decode(loc, priors)
    scores = prob[:, 1]
    candidate = scores > SCORE_FLOOR
    boxes, scores = boxes[candidate], scores[candidate]
    _, ascending = scores.sort(0)
    order = ascending[-NMS_TOP_K:].flip(0)  # the reference walks its ascending sort from the end
    keep = greedy_nms(boxes, order, NMS_IOU)[:TOP_K]
    kept_scores = scores[keep]
    above = int((kept_scores > conf_th).cumprod(0).sum())  # the reference reads rows while above conf_th
    scaled = boxes[keep[:above]] * torch.tensor([width, height, width, height], dtype=torch.float32,
                                                device=boxes.device)
    out = np.concatenate([scaled.cpu().numpy().astype(np.float64),
                          kept_scores[:above].cpu().numpy().astype(np.float64)[:, None]], 1)
    return out.reshape(-1, 5)


def final_nms(dets: np.ndarray, iou: float = FINAL_NMS_IOU) -> np.ndarray:
    """The reference's last suppression, over the detections of every scale (float64, best first)."""
    order = dets[:, 4].argsort()[::-1].copy()
    keep = greedy_nms(torch.from_numpy(dets[:, :4]), torch.from_numpy(order), iou)
    return dets[keep]


class S3FD:
    """The detector: ``detect(frames)`` gives each RGB uint8 frame's faces, (k, 5) x1, y1, x2, y2, score in
    the frame's pixels, best first; the frames of a chunk go through the network as one batch."""

    def __init__(self, net: S3FDNet, device: str | torch.device = "cpu", scale: float = SCALE,
                 conf_th: float = CONF_TH):
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.scale, self.conf_th = scale, conf_th
        self.weights: dict | None = None  # the file's description, where it was loaded from one

    def params(self) -> dict:
        """What the detections depend on: the detector, its settings and its weights' checksum."""
        return {"name": "s3fd-syncnet-python", "scale": self.scale, "conf_th": self.conf_th, "weights": self.weights}

    @torch.no_grad()
    def detect(self, frames: np.ndarray) -> list[np.ndarray]:
        if len(frames) == 0:
            return []
        height, width = frames.shape[1:3]
        small = np.stack([cv2.resize(np.ascontiguousarray(f), dsize=(0, 0), fx=self.scale, fy=self.scale,
                                     interpolation=cv2.INTER_LINEAR) for f in frames])
        x = torch.from_numpy(small).to(self.device).permute(0, 3, 1, 2).float()
        x = x - torch.tensor(MEAN_RGB, device=self.device)[None, :, None, None]
        loc, prob, maps = self.net(x)
        priors = prior_boxes(x.shape[2], x.shape[3], maps).to(self.device)
        return [final_nms(frame_detections(loc[i], prob[i], priors, width, height, self.conf_th))
                for i in range(len(frames))]


def load_s3fd(path: str | Path, device: str | torch.device = "cpu") -> S3FDNet:
    """``sfd_face.pth`` (a plain state dict, as syncnet_python saves it), read safely; a file of another
    layout (face-alignment's ``s3fd-619a316812.pth`` among them) is refused naming the difference."""
    net = S3FDNet()
    state = state_dict_of(read_checkpoint(path, "S3FD weights"), path)
    if "conv1_1.weight" in state:
        raise LipsyncBenchError(f"{path}: face-alignment's S3FD (s3fd-619a316812.pth's layout), another network "
                                "than syncnet_python's (fc6 without dilation, BGR input): give sfd_face.pth")
    load_state(net, state, path, "sfd_face.pth")
    return net.to(device).eval()


_LOADED: dict[tuple[str, str], S3FDNet] = {}


def s3fd_detector(device: str | torch.device = "cpu") -> S3FD:
    """syncnet_python's detector from ``sfd_face.pth`` in the weights folder (loaded once a process and
    device); ``UnavailableError`` saying where to get the file when it is missing."""
    path = weights.require("sfd-face")
    key = (weights.sha256(path), str(device))
    if key not in _LOADED:
        _LOADED[key] = load_s3fd(path, device)
    detector = S3FD(_LOADED[key], device)
    detector.weights = weights.describe("sfd-face", path)
    return detector
