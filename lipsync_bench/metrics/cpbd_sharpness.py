"""CPBD, the cumulative probability of blur detection (Narvekar & Karam 2011): a no-reference
sharpness of each frame's grey image, averaged over frames; higher is sharper.

The grey image is OpenCV's ``cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)`` (uint8), what the ViCo
evaluation gets from ``cv2.imread(path, 0)``. The procedure is the ``cpbd`` package's (1.0.7), the
usual reference of talking-face papers, here vectorised over the frame:

- edges for the blocks: scikit-image's ``canny`` (its defaults); edges for the widths: the Sobel
  response to the horizontal kernel normalised by its absolute sum (``scipy.ndimage.convolve``,
  reflected borders), squared, zeroed at or below 2 sqrt(mean), then kept where it exceeds both
  horizontal or both vertical neighbours (Octave's simple thinning, zero-padded);
- edge widths (Marziliano et al.): at each such edge pixel (not on the border) whose gradient angle
  (``numpy.gradient``, degrees, 0 where the x gradient is 0) quantises to 0 or ±180, the length of the
  monotone runs of the row to the left and right (each at most 101 pixels); 0 elsewhere, and
  everywhere when no angle is non-zero;
- blocks of 64x64 pixels (partial blocks left out) with more than 0.2% Canny edges; each block's
  just-noticeable width is 5 for a contrast (max - min) up to 50, else 3; each edge's probability of
  blur detection 1 - exp(-|w / w_JNB|^3.6), rounded to a percent; CPBD is the fraction of edges of
  all blocks whose probability is at most 63% (0 when there are none).
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage
from skimage.feature import canny

from ..errors import MetricError
from .streaming import Accumulator, FrameBatch, MetricContext, MetricValue

BLOCK = 64
EDGE_BLOCK_FRACTION = 0.002
BETA = 3.6
MAX_RUN = 100  # the reference scans at most 101 pixels each way
# The horizontal Sobel kernel (skimage's HSOBEL_WEIGHTS) normalised by its absolute sum, transposed.
SOBEL = (np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64) / 8).T


def grey(frames: np.ndarray) -> np.ndarray:
    """OpenCV's grey images of RGB uint8 frames (n, H, W, 3) -> (n, H, W) uint8."""
    return np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames])


def _sobel_edges(image: np.ndarray) -> np.ndarray:
    strength = np.square(ndimage.convolve(image, SOBEL))
    strength[strength <= 2 * np.sqrt(np.mean(strength))] = 0
    pad_c = np.zeros((strength.shape[0], 1))
    pad_r = np.zeros((1, strength.shape[1]))
    x = (strength > np.c_[pad_c, strength[:, :-1]]) & (strength > np.c_[strength[:, 1:], pad_c])
    y = (strength > np.r_[pad_r, strength[:-1, :]]) & (strength > np.r_[strength[1:, :], pad_r])
    return x | y


def _runs_ending(mask: np.ndarray) -> np.ndarray:
    """Per row, how many consecutive True values end at each position (0 where False)."""
    idx = np.broadcast_to(np.arange(mask.shape[1]), mask.shape)
    last_false = np.maximum.accumulate(np.where(mask, -1, idx), axis=1)
    return np.where(mask, idx - last_false, 0)


def _edge_widths(image: np.ndarray, edges: np.ndarray) -> np.ndarray:
    h, w = image.shape
    widths = np.zeros((h, w))
    gy, gx = np.gradient(image)
    with np.errstate(invalid="ignore", divide="ignore"):
        angles = np.where(gx != 0, np.arctan2(gy, gx) * (180 / np.pi), 0.0)
    if not angles.any():
        return widths
    quantised = 45 * np.round(angles / 45)
    d = np.diff(image, axis=1)  # d[:, k] = image[:, k + 1] - image[:, k], k = 0 .. w - 2
    runs = {}
    for sign, mask in (("neg", d < 0), ("pos", d > 0)):
        ending = _runs_ending(mask)  # runs going left from k
        starting = _runs_ending(mask[:, ::-1])[:, ::-1]  # runs going right from k
        runs[sign] = (ending, starting)
    rows, cols = np.nonzero(edges[1:-1, 1:-1])
    rows, cols = rows + 1, cols + 1
    q = quantised[rows, cols]
    for condition, sign in ((np.abs(q) == 180, "neg"), (q == 0, "pos")):
        r, c = rows[condition], cols[condition]
        ending, starting = runs[sign]
        left = np.where(c - 2 >= 0, ending[r, np.maximum(c - 2, 0)], 0)
        right = np.where(c + 1 <= w - 2, starting[r, np.minimum(c + 1, w - 2)], 0)
        widths[r, c] = np.minimum(left, MAX_RUN) + 1 + np.minimum(right, MAX_RUN) + 1
    return widths


def cpbd_image(image: np.ndarray) -> float:
    """CPBD of one grey image (H, W) uint8, as the ``cpbd`` package's ``compute``.

    Args:
        image: a grey image, uint8 or float, (H, W).

    Returns:
        The fraction of edges whose probability of blur detection is at most 63%, in [0, 1].

    Example:
        >>> import numpy as np
        >>> from scipy.ndimage import gaussian_filter
        >>> blocks = np.kron(np.random.default_rng(0).integers(100, 140, (8, 8)), np.ones((16, 16)))
        >>> round(cpbd_image(gaussian_filter(blocks, 3.0).astype(np.uint8)), 4)
        0.0124
        >>> cpbd_image(np.full((128, 128), 90, np.uint8))  # no edges at all
        0.0
    """
    image = np.asarray(image, dtype=np.float64)
    edges = canny(image)
    widths = _edge_widths(image, _sobel_edges(image))
    h, w = image.shape
    sharp = total = 0
    for i in range(h // BLOCK):
        for j in range(w // BLOCK):
            rows, cols = slice(BLOCK * i, BLOCK * (i + 1)), slice(BLOCK * j, BLOCK * (j + 1))
            if np.count_nonzero(edges[rows, cols]) <= BLOCK * BLOCK * EDGE_BLOCK_FRACTION:
                continue
            block = widths[rows, cols]
            block = block[block != 0]
            contrast = int(np.max(image[rows, cols]) - np.min(image[rows, cols]))
            jnb = 5.0 if contrast <= 50 else 3.0
            percent = np.round((1 - np.exp(-np.abs(block / jnb) ** BETA)) * 100)
            sharp += int(np.count_nonzero(percent <= 63))
            total += block.size
    return sharp / total if total else 0.0


class _CpbdAccumulator(Accumulator):
    def __init__(self):
        self.total, self.count = 0.0, 0

    def update(self, batch: FrameBatch) -> None:
        for image in grey(batch.gen.cpu().numpy()):
            self.total += cpbd_image(image)
            self.count += 1

    def result(self) -> MetricValue:
        if not self.count:
            raise MetricError("no frames")
        return MetricValue(self.total / self.count, self.count)


def make_accumulator(params: dict, ctx: MetricContext) -> Accumulator:
    """CPBD's accumulator (``declarations.CPBD``): the generated frames alone."""
    return _CpbdAccumulator()
