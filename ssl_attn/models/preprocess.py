"""Geometry-exact preprocessing: resize the FULL image to the input size, never crop.

The hub processors of DINOv2 and CLIP resize the short side and centre-crop, which shifts every
expert box. Here each image is resized as a whole to ``(H, W)`` (aspect ratio not kept, so the
map, the boxes and the image share one relative [0, 1]² frame), scaled to [0, 1] and normalised
with the model's own mean/std. Resizing uses PIL with each model's documented filter, which is
what the transformers processors do on PIL input; it is hand-composed here (rather than calling
the processors) because only the resize-without-crop variant is wanted and its parameters must
be recorded per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ssl_attn.models.registry import ModelSpec, grid_shape

__all__ = ["RESIZE_NOTE", "Batch", "input_hw", "preprocess_images"]

RESIZE_NOTE = "resize full image, no crop"

_PIL_FILTERS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass
class Batch:
    """Model input for a batch of images.

    Attributes:
        pixel_values: float tensor (B, 3, H, W) on the model's device, in the model's dtype.
        transforms: one dict per image: ``original`` [H, W] and ``input`` [H, W] in pixels,
            ``resize`` (:data:`RESIZE_NOTE`), ``interpolation``, ``mean``, ``std``.
    """

    pixel_values: Any
    transforms: list[dict[str, Any]]

    @property
    def input_hw(self) -> tuple[int, int]:
        """``(H, W)`` of :attr:`pixel_values`."""
        return int(self.pixel_values.shape[-2]), int(self.pixel_values.shape[-1])


def input_hw(spec: ModelSpec, size: int | Sequence[int] | None) -> tuple[int, int]:
    """Resolve a requested input size to ``(H, W)``; ``None`` means the spec's native size.

    Raises ``ValueError`` when a side is not a multiple of the patch size (32 for ResNet-50).
    """
    if size is None:
        size = spec.image_size
    if isinstance(size, (int, np.integer)):
        hw = (int(size), int(size))
    else:
        if len(size) != 2:
            raise ValueError(f"size must be an int or (H, W), got {size!r}")
        hw = (int(size[0]), int(size[1]))
    grid_shape(spec, hw)  # validates divisibility with a clear message
    return hw


def preprocess_images(
    spec: ModelSpec,
    images: Sequence[Image.Image],
    size: int | Sequence[int] | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Resize every full image to ``size`` and normalise it for ``spec``'s model.

    Args:
        spec: the model's spec (mean, std, resampling filter, native size, patch size).
        images: PIL images of any size and mode (converted to RGB).
        size: input side or ``(H, W)`` in pixels, multiples of the patch size; default
            ``spec.image_size`` (224).

    Returns:
        ``(array, transforms)``: float32 array (B, 3, H, W) and one transform record per image.
    """
    if isinstance(images, Image.Image):
        images = [images]
    if len(images) == 0:
        raise ValueError("preprocess: no images given")
    h, w = input_hw(spec, size)
    resample = _PIL_FILTERS[spec.resample]
    mean = np.asarray(spec.image_mean, dtype=np.float32)[:, None, None]
    std = np.asarray(spec.image_std, dtype=np.float32)[:, None, None]
    out = np.empty((len(images), 3, h, w), dtype=np.float32)
    transforms = []
    for i, img in enumerate(images):
        if not isinstance(img, Image.Image):
            raise TypeError(f"preprocess: image {i} is a {type(img).__name__}, not a PIL.Image")
        rgb = img.convert("RGB")
        resized = rgb.resize((w, h), resample=resample)  # PIL takes (width, height)
        arr = np.asarray(resized, dtype=np.float32).transpose(2, 0, 1) / 255.0
        out[i] = (arr - mean) / std
        transforms.append(
            {
                "original": [rgb.height, rgb.width],
                "input": [h, w],
                "resize": RESIZE_NOTE,
                "interpolation": spec.resample,
                "mean": [float(x) for x in spec.image_mean],
                "std": [float(x) for x in spec.image_std],
            }
        )
    return out, transforms
