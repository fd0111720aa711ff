"""WikiChurches data layer: download, read boxes/styles/images, rasterise boxes into masks.

WikiChurches (Barz & Denzler 2021, Zenodo record 5166987) gives 631 expert bounding boxes of
style-diagnostic building parts on 139 church photos. This package reads its on-disk layout
(also written by :mod:`ssl_attn.synthetic`):

>>> from ssl_attn.wikichurches import WikiChurches, union_mask    # doctest: +SKIP
>>> wc = WikiChurches("data/wikichurches")                         # doctest: +SKIP
>>> wc.boxes.head()                                                # doctest: +SKIP
>>> m = union_mask(wc.boxes_of("Q2034923_wd0"), 224, 224)          # doctest: +SKIP

Import-light: no torch, no network at import time.
"""

from __future__ import annotations

from .dataset import ValidationReport, WikiChurches
from .download import (
    DEFAULT_BASE_URL,
    DEFAULT_FILES,
    RECORD_ID,
    RemoteFile,
    ResumableDownloader,
    download,
    extract_annotated_images,
    fetch_record,
    load_registry,
    record_files,
    write_registry,
)
from .errors import ChecksumError, DownloadError, MissingImageError, WikiChurchesError
from .images import read_image
from .masks import as_box_array, box_masks, box_pixel_ranges, soft_target, union_mask
from .parse import BOX_TABLE_COLUMNS, box_outside_frame, image_file_name, image_id_of
from .problems import PROBLEM_KINDS, Problem
from .styles import MAIN_STYLE_NAMES, MAIN_STYLES, StyleRule, style_labels

__all__ = [
    "BOX_TABLE_COLUMNS",
    "DEFAULT_BASE_URL",
    "DEFAULT_FILES",
    "MAIN_STYLES",
    "MAIN_STYLE_NAMES",
    "PROBLEM_KINDS",
    "RECORD_ID",
    "ChecksumError",
    "DownloadError",
    "MissingImageError",
    "Problem",
    "RemoteFile",
    "ResumableDownloader",
    "StyleRule",
    "ValidationReport",
    "WikiChurches",
    "WikiChurchesError",
    "as_box_array",
    "box_masks",
    "box_outside_frame",
    "box_pixel_ranges",
    "download",
    "extract_annotated_images",
    "fetch_record",
    "image_file_name",
    "image_id_of",
    "load_registry",
    "read_image",
    "record_files",
    "soft_target",
    "style_labels",
    "union_mask",
    "write_registry",
]
