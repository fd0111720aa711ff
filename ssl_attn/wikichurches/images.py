"""Reading image files: the one place the data layer calls PIL, so every failure becomes a
:class:`WikiChurchesError` naming the file.

Decompression-bomb rule
-----------------------
PIL checks an image's *header* size when it opens the file, before anything is decoded: above
``2 * PIL.Image.MAX_IMAGE_PIXELS`` (about 179 Mpx by default) it raises
``DecompressionBombError``; above ``MAX_IMAGE_PIXELS`` (about 89 Mpx) it warns
(``DecompressionBombWarning``). Here:

* an image over the hard limit is **unreadable**, like a corrupt file, for every reader: its
  header size is unknown (``<NA>`` in ``WikiChurches.images``), ``validate()`` reports it,
  ``load_image`` raises (so ``extract`` skips it), whatever ``max_side`` asks for. Reduced
  (``draft``) decoding does not lift the limit: the limit is a property of the file, so all
  readers agree on which images exist, and it is PIL's own, adjustable in one place
  (``PIL.Image.MAX_IMAGE_PIXELS``) for trusted data;
* an image between the two limits is readable; PIL's warning is let through (if a warnings
  filter turns it into an exception, the image is unreadable, with that message).

Reduced decoding (``max_side``)
-------------------------------
``read_image(path, max_side=n)`` decodes at the coarsest cheap reduction that keeps **both**
sides ``>= n`` (never below; images already smaller are decoded whole): JPEG files by DCT
scaling (``Image.draft``: 1/2, 1/4 or 1/8 of each side, only that many pixels are ever
allocated), other formats by an integer ``Image.reduce`` after decoding. A consumer that
resamples to at most ``n`` pixels per side loses nothing it would keep. The pixels differ
slightly from a full decode followed by the same resize (DCT scaling is not a box filter), so
``max_side=None`` (the default) keeps the full decode.
"""

from __future__ import annotations

from pathlib import Path

from .errors import MissingImageError, WikiChurchesError

__all__ = ["open_image", "read_image", "reduce_factor"]


def _read_errors() -> tuple[type[BaseException], ...]:
    from PIL import Image, UnidentifiedImageError

    return (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError, Image.DecompressionBombWarning)


def _unreadable(path: Path, exc: BaseException) -> WikiChurchesError:
    from PIL import Image

    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        hint = (f"The image is larger than PIL's decompression-bomb limit "
                f"(PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}; files over twice that "
                "are refused); it is skipped. Raise the limit only for a file you trust.")
    else:
        hint = "The file is corrupt or truncated; extract it again from images.zip."
    return WikiChurchesError(f"{path}: cannot read image ({type(exc).__name__}: {exc}). {hint}")


def open_image(path: Path, *, decode: bool = False):
    """Open an image lazily (header only: ``.size`` is the file's true size) or fully decoded.

    Raises :class:`MissingImageError` when the file is absent and :class:`WikiChurchesError`
    naming the file when it cannot be read (corrupt, truncated, not an image, or over the
    decompression-bomb limit; see the module docstring).
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise MissingImageError(
            f"{path}: image not found. Extract it from images.zip with "
            "ssl_attn.wikichurches.extract_annotated_images() (or `ssl-attn extract`)."
        )
    im = None
    try:
        im = Image.open(path)
        if decode:
            im.load()
    except _read_errors() as exc:
        if im is not None:
            im.close()
        raise _unreadable(path, exc) from exc
    return im


def reduce_factor(size: tuple[int, int], max_side: int | None) -> int:
    """The largest integer factor ``f >= 1`` with both ``size`` sides ``// f >= max_side``
    (1 when ``max_side`` is None or the image is already small)."""
    if max_side is None:
        return 1
    if int(max_side) < 1:
        raise ValueError(f"max_side must be a positive number of pixels or None; got {max_side!r}")
    return max(1, min(size[0] // int(max_side), size[1] // int(max_side)))


def read_image(path: Path, *, max_side: int | None = None):
    """Decode an image file as an RGB ``PIL.Image`` (EXIF orientation not applied).

    ``max_side=None`` decodes the full stored pixel grid; an int decodes it reduced, keeping
    both sides ``>= max_side`` (JPEG ``draft``, else ``Image.reduce``; see the module
    docstring). Errors as :func:`open_image`.
    """
    im = open_image(path)
    try:
        f = reduce_factor(im.size, max_side)
        if f > 1 and im.format in ("JPEG", "MPO"):
            im.draft("RGB", (int(max_side), int(max_side)))  # type: ignore[arg-type]
            f = 1  # draft chose its own scale (a power of two <= f)
        im.load()
        if f > 1:
            im = im.reduce(f)
        return im.convert("RGB") if im.mode != "RGB" else im
    except _read_errors() as exc:
        im.close()
        raise _unreadable(path, exc) from exc
