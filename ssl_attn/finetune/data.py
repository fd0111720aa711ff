"""The torch Dataset of a split: decoded once, augmented reproducibly, preprocessed as extract.

Each image is decoded once (``WikiChurches.load_image(max_side=...)``, reduced JPEG decoding)
and, with ``cache=True``, kept in memory as a PIL image. Training samples are augmented on the
PIL image *before* the model's own preprocessing
(:func:`ssl_attn.models.preprocess.preprocess_images`: resize the full image, no crop,
normalise):

1. random resized crop: area share uniform in ``crop_scale`` (default 0.8–1), aspect ratio
   log-uniform in (3/4, 4/3) (torchvision's ``RandomResizedCrop`` convention); after 10 draws
   that do not fit, the full image;
2. horizontal flip with probability ``hflip`` (default 0.5);
3. colour jitter: brightness, contrast and saturation factors each uniform in
   ``[1 - jitter, 1 + jitter]`` (default 0.2), applied in that order.

The parameters are drawn from a numpy Generator seeded by ``(seed, epoch, index)`` — never the
global RNG — and applied with ``torchvision.transforms.v2.functional``, so any number of
processes or workers, in any order, and a resumed run see identical samples. Evaluation
(``train=False``) never augments: the sample is exactly what ``extract`` feeds the model.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ssl_attn.models.preprocess import input_hw, preprocess_images
from ssl_attn.models.registry import ModelSpec

__all__ = ["ASPECT_RANGE", "MAX_CROP_TRIES", "StyleImages"]

#: Aspect-ratio (width / height) range of the random resized crop, drawn log-uniformly.
ASPECT_RANGE = (3 / 4, 4 / 3)
#: Draws of the random resized crop before falling back to the full image.
MAX_CROP_TRIES = 10


class StyleImages(torch.utils.data.Dataset):
    """Images of a split with their class labels, as model input tensors.

    Args:
        wc: the :class:`~ssl_attn.wikichurches.WikiChurches` dataset holding the images.
        ids: image ids (e.g. ``split.train``).
        labels: int class indices, shape (len(ids),) (e.g. ``split.label_array(ids)``).
        spec: the model's spec (mean, std, resampling filter, patch size).
        size: model input ``(H, W)`` in pixels (an int means square), multiples of the patch.
        train: augment (True) or not (False: the full image, exactly as ``extract``).
        seed: augmentation seed (>= 0); with the epoch (:meth:`set_epoch`) and the index it
            fixes every sample.
        crop_scale: (min, max) area share of the random resized crop, within (0, 1].
        hflip: probability of a horizontal flip, in [0, 1].
        jitter: colour-jitter strength in [0, 1): factors uniform in [1 - jitter, 1 + jitter].
        cache: keep decoded PIL images in memory (about 3 bytes per decoded pixel; JPEGs are
            decoded at the power-of-two reduction keeping both sides >= :attr:`max_side`).

    ``dataset[i]`` is ``(pixel_values, label)``: a float32 tensor (3, H, W), normalised, and an
    int. :attr:`max_side` is the decode size: ``max(size)`` for evaluation (as ``extract``),
    ``ceil(max(size) / sqrt(crop_scale[0]))`` for training, so the smallest crop still has
    about the model's input resolution.
    """

    def __init__(self, wc: Any, ids: Sequence[str], labels: np.ndarray, spec: ModelSpec,
                 size: int | tuple[int, int], *, train: bool, seed: int = 0,
                 crop_scale: tuple[float, float] = (0.8, 1.0), hflip: float = 0.5,
                 jitter: float = 0.2, cache: bool = True) -> None:
        self.wc = wc
        self.ids = tuple(str(i) for i in ids)
        labels = np.asarray(labels)
        if labels.shape != (len(self.ids),) or (labels.size and labels.dtype.kind not in "iu"):
            raise ValueError(f"labels must be an int array of shape ({len(self.ids)},) (one "
                             f"per id); got dtype {labels.dtype}, shape {labels.shape}")
        self.labels = labels.astype(np.int64)
        self.spec = spec
        self.size = input_hw(spec, size)
        self.train = bool(train)
        lo, hi = (float(c) for c in crop_scale)
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"crop_scale must be (min, max) with 0 < min <= max <= 1; got "
                             f"{crop_scale!r}")
        if not 0.0 <= float(hflip) <= 1.0:
            raise ValueError(f"hflip is a probability in [0, 1]; got {hflip!r}")
        if not 0.0 <= float(jitter) < 1.0:
            raise ValueError(f"jitter must be in [0, 1); got {jitter!r}")
        if int(seed) < 0:
            raise ValueError(f"seed must be >= 0; got {seed!r}")
        self.seed, self.crop_scale = int(seed), (lo, hi)
        self.hflip, self.jitter = float(hflip), float(jitter)
        side = max(self.size)
        self.max_side = math.ceil(side / math.sqrt(lo)) if self.train else side
        self.epoch = 0
        self._cache: dict[str, Any] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.ids)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (>= 0); call before each epoch."""
        if int(epoch) < 0:
            raise ValueError(f"epoch must be >= 0; got {epoch!r}")
        self.epoch = int(epoch)

    def image(self, i: int):
        """The decoded RGB PIL image of item ``i`` (cached when ``cache=True``)."""
        iid = self.ids[i]
        if self._cache is not None and iid in self._cache:
            return self._cache[iid]
        img = self.wc.load_image(iid, max_side=self.max_side)
        if self._cache is not None:
            self._cache[iid] = img
        return img

    def augment_params(self, i: int, width: int, height: int) -> dict[str, Any]:
        """The augmentation of item ``i`` in the current epoch for a ``width`` x ``height``
        image: ``crop`` (top, left, height, width) in pixels, ``flip`` (bool) and ``factors``
        (brightness, contrast, saturation). Depends only on ``(seed, epoch, i)``."""
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        area = width * height
        log_lo, log_hi = math.log(ASPECT_RANGE[0]), math.log(ASPECT_RANGE[1])
        crop = (0, 0, height, width)
        for _ in range(MAX_CROP_TRIES):
            target = area * rng.uniform(*self.crop_scale)
            ratio = math.exp(rng.uniform(log_lo, log_hi))
            w = round(math.sqrt(target * ratio))
            h = round(math.sqrt(target / ratio))
            if 0 < w <= width and 0 < h <= height:
                crop = (int(rng.integers(0, height - h + 1)),
                        int(rng.integers(0, width - w + 1)), h, w)
                break
        flip = bool(rng.random() < self.hflip)
        factors = tuple(float(f) for f in rng.uniform(1 - self.jitter, 1 + self.jitter, 3))
        return {"crop": crop, "flip": flip, "factors": factors}

    def augment(self, img, i: int):
        """Item ``i``'s augmentation (:meth:`augment_params`) applied to a PIL image."""
        from torchvision.transforms.v2 import functional as tvf

        p = self.augment_params(i, img.width, img.height)
        out = tvf.crop(img, *p["crop"])
        if p["flip"]:
            out = tvf.horizontal_flip(out)
        b, c, s = p["factors"]
        out = tvf.adjust_brightness(out, b)
        out = tvf.adjust_contrast(out, c)
        return tvf.adjust_saturation(out, s)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        i = operator.index(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        i %= len(self)
        img = self.image(i)
        if self.train:
            img = self.augment(img, i)
        arr, _ = preprocess_images(self.spec, [img], self.size)
        return torch.from_numpy(arr[0]), int(self.labels[i])
