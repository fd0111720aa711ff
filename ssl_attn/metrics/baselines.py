"""Baseline maps: what a score means only next to these (DESIGN.md §7).

All baselines are made directly in the ``R × R`` evaluation frame over the full image (the
same relative frame as the boxes), so upsampling leaves them unchanged.

- ``uniform``: i.i.d. ``U(0, 1)`` noise per *evaluation-frame pixel* (``R × R``), ``n_draws``
  draws (default 100) per image from ``numpy.random.default_rng([seed, crc32(image_id)])``,
  so each image's draws are reproducible whatever the chunking. Scores are the mean over
  draws; the std over draws is kept separately.
- ``center``: isotropic Gaussian centred on the image, ``σ = 0.25`` in relative units (a
  quarter of the side; in a non-square photo this is a quarter of each side).
- ``saliency``: a centre-and-border prior: the image resized to ``R × R`` (RGB in [0, 1]) is
  blurred (Gaussian, ``σ = R/112`` px, i.e. 2 px at 224); each pixel's Euclidean RGB distance
  to the mean colour of the border ring (the outer ``max(1, round(R/20))`` px, the typical
  background: sky, street) is multiplied by a centre Gaussian of ``σ = 0.3``.
- ``sobel``: Sobel gradient magnitude ``hypot(sobel_y, sobel_x)`` (``scipy.ndimage.sobel``,
  reflect borders) of the grey image (PIL ``L``) resized to ``R × R`` (PIL bilinear).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

__all__ = [
    "BASELINES",
    "CENTER_SIGMA",
    "N_DRAWS",
    "SALIENCY_SIGMA",
    "baseline_maps",
    "center_map",
    "saliency_map",
    "sobel_map",
    "uniform_maps",
]

#: Baseline names; stored as model ``baseline:<name>`` in the scores.
BASELINES: tuple[str, ...] = ("uniform", "center", "saliency", "sobel")
#: Draws of uniform noise per image.
N_DRAWS = 100
#: σ of the centre baseline, relative units.
CENTER_SIGMA = 0.25
#: σ of the centre term of the saliency prior, relative units.
SALIENCY_SIGMA = 0.3


def _gaussian(frame: int, sigma: float) -> np.ndarray:
    c = (np.arange(frame) + 0.5) / frame - 0.5
    g = np.exp(-0.5 * (c / sigma) ** 2)
    return np.outer(g, g)


def uniform_maps(image_id: str, frame: int = 224, n_draws: int = N_DRAWS, seed: int = 0
                 ) -> np.ndarray:
    """``n_draws`` maps of i.i.d. ``U(0, 1)`` pixels: float32 ``(n_draws, frame, frame)``,
    seeded by ``(seed, crc32(image_id))``."""
    rng = np.random.default_rng([int(seed), zlib.crc32(image_id.encode("utf-8"))])
    return rng.random((int(n_draws), frame, frame), dtype=np.float32)


def center_map(frame: int = 224, sigma: float = CENTER_SIGMA) -> np.ndarray:
    """Centred isotropic Gaussian (relative ``σ``): float64 ``(frame, frame)``, peak 1."""
    return _gaussian(frame, sigma)


def _resized(image, frame: int, mode: str) -> np.ndarray:
    from PIL import Image

    im = image.convert(mode).resize((frame, frame), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.float64) / 255.0


def sobel_map(image, frame: int = 224) -> np.ndarray:
    """Sobel edge magnitude of the grey image resized to ``frame × frame``: float64."""
    from scipy import ndimage

    grey = _resized(image, frame, "L")
    return np.hypot(ndimage.sobel(grey, axis=0), ndimage.sobel(grey, axis=1))


def saliency_map(image, frame: int = 224) -> np.ndarray:
    """Centre-and-border saliency prior (module doc): float64 ``(frame, frame)``."""
    from scipy import ndimage

    rgb = _resized(image, frame, "RGB")
    rgb = ndimage.gaussian_filter(rgb, sigma=(frame / 112.0, frame / 112.0, 0))
    ring = max(1, round(frame / 20))
    border = np.ones((frame, frame), dtype=bool)
    border[ring:-ring, ring:-ring] = False
    bg = rgb[border].mean(axis=0)
    contrast = np.sqrt(((rgb - bg) ** 2).sum(axis=-1))
    return contrast * _gaussian(frame, SALIENCY_SIGMA)


def baseline_maps(
    name: str,
    image_id: str,
    *,
    frame: int = 224,
    load_image: Callable[[str], object] | None = None,
    n_draws: int = N_DRAWS,
    seed: int = 0,
) -> np.ndarray:
    """Maps of baseline ``name`` for one image: float32 ``(n, frame, frame)`` (``n`` =
    ``n_draws`` for ``uniform``, else 1). ``load_image(image_id) -> PIL.Image`` is needed for
    ``saliency`` and ``sobel``."""
    if name == "uniform":
        return uniform_maps(image_id, frame, n_draws, seed)
    if name == "center":
        return center_map(frame)[None].astype(np.float32)
    if name in ("saliency", "sobel"):
        if load_image is None:
            raise ValueError(f"baseline {name!r} needs the image: pass load_image")
        fn = saliency_map if name == "saliency" else sobel_map
        return fn(load_image(image_id), frame)[None].astype(np.float32)
    raise ValueError(f"unknown baseline {name!r}; choose from {BASELINES}")
