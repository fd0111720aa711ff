"""Small schema-conformant fixtures for the explorer: a WikiChurches-format folder, an attention
store (docs/SCHEMA.md "Attention store") and its scores (``X.scores.zarr``).

Every array has a **closed-form content** so tests can assert exact values by hand:

* maps (``peak_map``): uniform ``(1 − p)/N`` everywhere plus ``p`` at one cell (each sums to 1);
  ``p = 0.5 + 0.1·variant_index + 0.01·image_index``; the peak cell per method is
  ``cls (l % gh, h % gw)``, ``mean_received (gh − 1 − l % gh, h % gw)``,
  ``rollout (l % gh, gw − 1)``,
  ``probe (0, h % gw)``, ``gradcam (l % gh, l % gw)`` with ``l``/``h`` the *positions* of the
  layer / head in their coordinates;
* ``register_mass = 0.01·(l + 1)``, ``cls_self = 0.02``;
* ``embedding[y, x] = e_k`` with ``k = (y·gw + x) % C`` (one-hot): cosine similarity is 1 between
  patches with equal ``k`` and 0 otherwise;
* scores (:func:`score_value`): ``coverage = 0.1 + 0.01·l + 0.001·(h + 1) + 0.0001·i`` (``l``,
  ``h`` as stored coordinates, ``h = −1`` for the head-mean), ``iou = coverage·p/100`` over the
  ``percentile`` dim, ``kl = 1 − coverage`` (lower is better), ``pointing = 1`` when
  ``(l + h)`` is even else 0; per box ``box_coverage = 0.05·(b + 1) + 0.01·l`` with ``b`` the
  box's ``box_index`` (the ``box`` dim is global over all images, named by the coords
  ``box_image_id`` and ``box_index``, as ssl_attn.metrics writes it); baselines ``coverage``
  0.20 / 0.30 / 0.25 / 0.15 (uniform / center / saliency / sobel), ``iou = coverage·p/100``,
  ``kl = 1 − coverage``, ``pointing = 0``.

The benchmark (``benchmarks/explorer.py``) reuses :func:`build_store` with full-size layouts and
``content="random"`` (random but structured values for timing only).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from PIL import Image

from ssl_attn.store import VARIABLE_DIMS

BASELINES = {"baseline:uniform": 0.20, "baseline:center": 0.30, "baseline:saliency": 0.25,
             "baseline:sobel": 0.15}
PERCENTILES = (50, 90)
FEATURES = ("Portal", "Rose window", "Arch window", "Buttress", "Pediment")


@dataclass(frozen=True)
class ModelLayout:
    """What one model group holds: its methods, layer/head coordinates and patch grid."""

    key: str
    methods: tuple[str, ...]
    layers: tuple[int, ...]
    heads: tuple[int, ...]
    grid: tuple[int, int]
    variants: tuple[str, ...] = ("frozen",)
    n_registers: int = 0
    embeddings: bool = False
    channels: int = 8


#: Small layouts for unit tests: a non-square grid (catches transposes), a CLS-free SigLIP-like
#: model with a probe, and a ResNet-like model with Grad-CAM stages 1..4.
TEST_MODELS = (
    ModelLayout("vit", ("cls", "rollout", "mean_received"), (0, 1, 2), (0, 1, 2), (4, 6),
                variants=("frozen", "full"), n_registers=4, embeddings=True),
    ModelLayout("sig", ("mean_received", "probe"), (0, 1), (0, 1), (3, 3)),
    ModelLayout("cnn", ("gradcam",), (1, 2, 3, 4), (), (2, 2)),
)

#: image id → (width px, height px, boxes as (left, top, width, height, feature index)).
TEST_IMAGES: dict[str, tuple[int, int, list[tuple[float, float, float, float, int]]]] = {
    "Q100_wd0": (64, 48, [(0.25, 0.5, 0.5, 0.25, 0), (0.0, 0.0, 0.5, 0.5, 1)]),
    "Q200_wd0": (40, 60, [(0.1, 0.1, 0.2, 0.3, 2), (0.5, 0.6, 0.4, 0.3, 0),
                          (0.6, 0.1, 0.3, 0.2, 3)]),
    "Q300_wd1": (50, 50, [(0.2, 0.2, 0.6, 0.6, 4)]),
}
TEST_STYLES = {"Q100_wd0": ["Q46261"], "Q200_wd0": ["Q176483"], "Q300_wd1": ["Q840829"]}


def peak_map(gh: int, gw: int, r: int, c: int, p: float) -> np.ndarray:
    """``(gh, gw)`` float32 map: ``(1 − p)/(gh·gw)`` everywhere plus ``p`` at ``(r, c)``."""
    m = np.full((gh, gw), (1.0 - p) / (gh * gw), dtype=np.float64)
    m[r, c] += p
    return m.astype(np.float32)


def peak_cell(method: str, li: int, hi: int, gh: int, gw: int) -> tuple[int, int]:
    """The peak cell of the closed-form map for layer position ``li`` and head position ``hi``."""
    if method == "cls":
        return li % gh, hi % gw
    if method == "mean_received":
        return gh - 1 - li % gh, hi % gw
    if method == "rollout":
        return li % gh, gw - 1
    if method == "probe":
        return 0, hi % gw
    if method == "gradcam":
        return li % gh, li % gw
    raise KeyError(method)


def peak_mass(variant_index: int, image_index: int) -> float:
    """``p`` of the closed-form maps."""
    return 0.5 + 0.1 * variant_index + 0.01 * image_index


def build_dataset(root: Path, images: dict = TEST_IMAGES, *, synthetic: bool = True) -> Path:
    """Write a WikiChurches-format folder: ``building_parts.json``, ``churches.json``,
    ``style_names.txt``, ``images/<id>.jpg`` (solid colour with a dark top-left quadrant) and,
    when ``synthetic``, the ``synthetic.json`` marker."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    meta = [{"name": name, "parents": []} for name in FEATURES]
    annotations = {}
    for i, (iid, (w, h, boxes)) in enumerate(images.items()):
        arr = np.zeros((h, w, 3), np.uint8)
        arr[...] = (60 * i % 255, 120, 200)
        arr[: h // 2, : w // 2] = 20
        Image.fromarray(arr).save(root / "images" / f"{iid}.jpg", quality=95)
        elements = [{"left": b[0], "top": b[1], "width": b[2], "height": b[3], "label": b[4]}
                    for b in boxes]
        annotations[f"{iid}.jpg"] = {
            "styles": TEST_STYLES.get(iid, ["Q46261"]),
            "bbox_groups": [{"group_label": elements[0]["label"] if elements else 0,
                             "elements": elements}],
        }
    (root / "building_parts.json").write_text(json.dumps({"meta": meta,
                                                          "annotations": annotations}))
    churches = {iid.split("_wd")[0]: {"name": f"Church {iid}", "built_year": 1200,
                                      "styles": TEST_STYLES.get(iid, ["Q46261"]),
                                      "country": "X", "location": [0.0, 0.0]}
                for iid in images}
    (root / "churches.json").write_text(json.dumps(churches))
    (root / "style_names.txt").write_text(
        "Q46261 Romanesque\nQ176483 Gothic\nQ236122 Renaissance\nQ840829 Baroque\n")
    if synthetic:
        (root / "synthetic.json").write_text(json.dumps({"generator": "tests/_store_builder"}))
    return root


def _provenance(synthetic: bool) -> dict:
    return {"ssl_attn_version": "0.1.0", "git_commit": "test", "library_versions": "{}",
            "device": "cpu", "dtype": "float32", "created": "2026-01-01T00:00:00Z",
            "synthetic": bool(synthetic)}


def model_dataset(
    layout: ModelLayout,
    image_ids: Sequence[str],
    sizes: dict[str, tuple[int, int]],
    *,
    content: str = "closed-form",
    synthetic: bool = True,
    seed: int = 0,
) -> xr.Dataset:
    """One model group as an ``xr.Dataset`` following docs/SCHEMA.md."""
    gh, gw = layout.grid
    V, n_img, L, H = len(layout.variants), len(image_ids), len(layout.layers), len(layout.heads)
    rng = np.random.default_rng(seed)
    coords = {
        "variant": np.array(layout.variants, dtype=object),
        "image_id": np.array(image_ids, dtype=object),
        "y": (np.arange(gh) + 0.5) / gh, "x": (np.arange(gw) + 0.5) / gw,
        "style": ("image_id", np.array(["Q46261"] * n_img, dtype=object)),
        "width": ("image_id", np.array([sizes[i][0] for i in image_ids], np.int64)),
        "height": ("image_id", np.array([sizes[i][1] for i in image_ids], np.int64)),
    }
    if L:
        coords["layer"] = np.array(layout.layers, np.int64)
    if H:
        coords["head"] = np.array(layout.heads, np.int64)

    def cube(method: str, has_layer: bool, has_head: bool) -> np.ndarray:
        shape = (V, n_img, L if has_layer else 1, H if has_head else 1, gh, gw)
        if content == "random":
            # Random but structured: a smooth blob whose centre drifts with layer and head.
            yy, xx = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
            out = rng.random(shape, dtype=np.float32) * 0.2
            for li in range(shape[2]):
                for hi in range(shape[3]):
                    cy, cx = (li * 3 + hi) % gh, (hi * 5 + li) % gw
                    out[:, :, li, hi] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
            out /= out.sum(axis=(-2, -1), keepdims=True)
            return out
        out = np.empty(shape, np.float32)
        for vi in range(V):
            for ii in range(n_img):
                for li in range(shape[2]):
                    for hi in range(shape[3]):
                        r, c = peak_cell(method, li, hi, gh, gw)
                        out[vi, ii, li, hi] = peak_map(gh, gw, r, c, peak_mass(vi, ii))
        return out

    data = {}
    for method in layout.methods:
        has_layer = "layer" in VARIABLE_DIMS[method]
        has_head = "head" in VARIABLE_DIMS[method]
        arr = cube(method, has_layer, has_head)
        dims = ["variant", "image_id", "layer", "head", "y", "x"]
        if not has_head:
            arr, dims = arr[:, :, :, 0], [d for d in dims if d != "head"]
        if not has_layer:
            arr, dims = arr[:, :, 0], [d for d in dims if d != "layer"]
        data[method] = (dims, arr)
    if "cls" in layout.methods:
        lay = np.asarray(layout.layers, np.float32)
        data["register_mass"] = (["variant", "image_id", "layer", "head"],
                                 np.broadcast_to(0.01 * (lay[None, None, :, None] + 1),
                                                 (V, n_img, L, H)).astype(np.float32))
        data["cls_self"] = (["variant", "image_id", "layer", "head"],
                            np.full((V, n_img, L, H), 0.02, np.float32))
    if layout.embeddings:
        C = layout.channels
        k = (np.arange(gh)[:, None] * gw + np.arange(gw)[None, :]) % C
        emb = np.eye(C, dtype=np.float16)[k]  # (gh, gw, C)
        data["embedding"] = (["variant", "image_id", "y", "x", "channel"],
                             np.broadcast_to(emb, (V, n_img, gh, gw, C)).copy())
    data["complete"] = (["variant", "image_id"], np.ones((V, n_img), bool))
    attrs = _provenance(synthetic) | {
        "model_key": layout.key, "checkpoint": f"test/{layout.key}", "revision": "none",
        "family": "vit" if layout.key != "cnn" else "cnn", "patch_size": 16,
        "n_prefix_tokens": 1 + layout.n_registers, "n_registers": layout.n_registers,
        "grid": json.dumps([gh, gw]), "input_size": json.dumps([gh * 16, gw * 16]),
        "preprocessing": json.dumps({"resize": [gh * 16, gw * 16]}), "weights": "random-init",
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)


def build_store(
    path: Path,
    models: Sequence[ModelLayout] = TEST_MODELS,
    images: dict = TEST_IMAGES,
    *,
    dataset: str | Path = "",
    synthetic: bool = True,
    content: str = "closed-form",
    styles: dict[str, str] | None = None,
    variant_provenance: dict[str, dict[str, dict]] | None = None,
) -> Path:
    """Write a DataTree store ``path`` (Zarr) with one group per model, chunked per image.

    ``styles``: ``{image_id: style QID}`` for the groups' ``style`` coordinate (default every
    image ``Q46261``); ``variant_provenance``: ``{model key: {variant: attrs}}`` written as the
    group attr ``variant_provenance`` (JSON), as extraction records fine-tuned variants."""
    sizes = {iid: (w, h) for iid, (w, h, _) in images.items()}
    ids = list(images)
    tree = {"/": xr.Dataset(attrs=_provenance(synthetic) | {
        "dataset": str(dataset), "skipped_images": "[]"})}
    encoding = {}
    for k, layout in enumerate(models):
        ds = model_dataset(layout, ids, sizes, content=content, synthetic=synthetic, seed=k)
        if styles is not None:
            ds = ds.assign_coords(style=("image_id", np.array([styles.get(i, "") for i in ids],
                                                              dtype=object)))
        if variant_provenance and layout.key in variant_provenance:
            ds.attrs["variant_provenance"] = json.dumps(variant_provenance[layout.key])
        tree[f"/{layout.key}"] = ds
        enc = {}
        for name, var in ds.data_vars.items():
            enc[name] = {"chunks": tuple(1 if d in ("variant", "image_id") else n
                                         for d, n in zip(var.dims, var.shape))}
        encoding[f"/{layout.key}"] = enc
    xr.DataTree.from_dict(tree).to_zarr(path, mode="w", encoding=encoding)
    return Path(path)


def score_value(layer: int, head: int, image_index: int) -> float:
    """The closed-form ``coverage`` score of a (layer, head, image) cell."""
    return 0.1 + 0.01 * layer + 0.001 * (head + 1) + 0.0001 * image_index


def build_scores(
    path: Path,
    models: Sequence[ModelLayout] = TEST_MODELS,
    images: dict = TEST_IMAGES,
    *,
    content: str = "closed-form",
    seed: int = 0,
) -> Path:
    """Write the scores Dataset (docs/SCHEMA.md "Scores") at ``path`` (``X.scores.zarr``)."""
    rng = np.random.default_rng(seed)
    ids = list(images)
    names = [m.key for m in models] + list(BASELINES)
    variants = sorted({v for m in models for v in m.variants}, key=["frozen"].__contains__,
                      reverse=True)
    methods = [*sorted({x for m in models for x in m.methods}), "baseline"]
    layers = sorted({-1, *{la for m in models for la in m.layers}})
    heads = sorted({-1, *{h for m in models for h in m.heads}})
    # Boxes are numbered globally along ``box`` (as ssl_attn.metrics does), named by the coords
    # ``box_image_id`` and ``box_index``.
    box_img = [iid for iid in ids for _ in images[iid][2]]
    box_idx = [k for iid in ids for k in range(len(images[iid][2]))]
    n_box = len(box_img)
    shape = (len(names), len(variants), len(methods), len(layers), len(heads), len(ids))
    cov = np.full(shape, np.nan)
    box_cov = np.full((*shape[:-1], n_box), np.nan)
    point = np.full(shape, np.nan)
    idx = {d: {v: i for i, v in enumerate(vals)} for d, vals in
           (("model", names), ("variant", variants), ("method", methods), ("layer", layers),
            ("head", heads))}
    for m in models:
        for v in m.variants:
            for meth in m.methods:
                m_layers = [-1] if meth == "probe" else list(m.layers)
                m_heads = [-1, *m.heads] if meth in ("cls", "mean_received", "probe") else [-1]
                for la in m_layers:
                    for h in m_heads:
                        at = (idx["model"][m.key], idx["variant"][v], idx["method"][meth],
                              idx["layer"][la], idx["head"][h])
                        if content == "random":
                            cov[at] = rng.uniform(0.05, 0.6, size=len(ids))
                        else:
                            cov[at] = [score_value(la, h, ii) for ii in range(len(ids))]
                        point[at] = float((la + h) % 2 == 0)
                        box_cov[at] = 0.05 * (np.asarray(box_idx) + 1) + 0.01 * la
    for name, value in BASELINES.items():
        at = (idx["model"][name], idx["variant"]["frozen"], idx["method"]["baseline"],
              idx["layer"][-1], idx["head"][-1])
        cov[at] = value
        point[at] = 0.0
    pct = np.asarray(PERCENTILES, float)
    dims = ("model", "variant", "method", "layer", "head", "image_id")
    ds = xr.Dataset(
        {
            "coverage": (dims, cov.astype(np.float32),
                         {"direction": "higher", "range": json.dumps([0, 1]),
                          "long_name": "energy inside the boxes"}),
            "iou": ((*dims, "percentile"), (cov[..., None] * pct / 100).astype(np.float32),
                    {"direction": "higher", "range": json.dumps([0, 1]),
                     "long_name": "IoU of the top-(100-p)% region with the box union"}),
            "kl": (dims, (1 - cov).astype(np.float32),
                   {"direction": "lower", "range": json.dumps([0, None]),
                    "long_name": "KL(target‖map)"}),
            "pointing": (dims, point.astype(np.float32),
                         {"direction": "higher", "range": json.dumps([0, 1]),
                          "long_name": "pointing game (strict)"}),
            "box_coverage": ((*dims[:-1], "box"), box_cov.astype(np.float32),
                             {"direction": "higher", "range": json.dumps([0, 1]),
                              "long_name": "energy inside each box"}),
        },
        coords={"model": np.array(names, dtype=object),
                "variant": np.array(variants, dtype=object),
                "method": np.array(methods, dtype=object), "layer": layers,
                "head": heads, "image_id": np.array(ids, dtype=object),
                "percentile": pct.astype(np.float64),
                "box": np.arange(n_box),
                "box_image_id": ("box", np.array(box_img, dtype=object)),
                "box_index": ("box", np.array(box_idx, dtype=np.int64))},
        attrs={"synthetic": True, "store": "test"},
    )
    enc = {name: {"chunks": tuple(1 if d in ("model", "variant", "method") else n
                                  for d, n in zip(var.dims, var.shape))}
           for name, var in ds.data_vars.items()}
    ds.to_zarr(path, mode="w", encoding=enc)
    return Path(path)


@dataclass
class Fixture:
    """Paths of a built fixture (``data_dir`` holds all of them)."""

    data_dir: Path
    dataset: Path
    store: Path
    scores: Path
    extra: dict = field(default_factory=dict)


def build_all(data_dir: Path, *, scores: bool = True) -> Fixture:
    """Dataset, store (``stores/test.zarr``) and scores (``stores/test.scores.zarr``)."""
    data_dir = Path(data_dir)
    ds_root = build_dataset(data_dir / "synthetic")
    store = build_store(data_dir / "stores" / "test.zarr", dataset=ds_root)
    sc = data_dir / "stores" / "test.scores.zarr"
    if scores:
        build_scores(sc)
    return Fixture(data_dir, ds_root, store, sc)


def frame_table(iid: str) -> pd.DataFrame:
    """The test boxes of one image as relative ``left, top, width, height`` rows."""
    return pd.DataFrame(TEST_IMAGES[iid][2], columns=["left", "top", "width", "height", "label"])


# ------------------------------------------------------------------ Q2: fine-tuned variants
#: The hand-built scores of the shift tests (:func:`shift_scores`): six images of two styles.
SHIFT_IMAGES: dict[str, tuple[int, int, list[tuple[float, float, float, float, int]]]] = {
    f"Q{k}00_wd0": (48, 40, [(0.1, 0.1, 0.4, 0.4, k % 2), (0.5, 0.5, 0.4, 0.4, 2)])
    for k in range(1, 7)}
SHIFT_STYLES = {iid: ("Q46261" if k < 3 else "Q176483") for k, iid in enumerate(SHIFT_IMAGES)}
SHIFT_VARIANTS = ("frozen", "full", "full_shuffled")


def shift_scores(
    *,
    models: Sequence[str] = ("vitA", "vitB"),
    variants: Sequence[str] = SHIFT_VARIANTS,
    layers: Sequence[int] = (0, 1, 2),
    methods: Sequence[str] = ("cls", "rollout"),
    seed: int = 3,
) -> xr.Dataset:
    """A small scores Dataset (docs/SCHEMA.md "Scores") with fine-tuned variants, in memory.

    Image-level ``coverage`` of the reference ``frozen`` is drawn per (model, method, layer,
    head, image) from ``default_rng(seed)`` (uniform 0.1–0.6, rounded to 0.001); the other
    variants add a planted shift plus rounded Gaussian noise: ``full`` adds ``0.05·(layer + 1)``
    (sd 0.01) for the first model (enhance at every layer), ``−0.06`` at its last layer and
    nothing elsewhere (sd 0.02) for the second (destroy, else preserve); a ``*_shuffled``
    variant adds ``0.01`` (sd 0.03). ``iou = coverage·p/100`` per percentile (50, 90),
    ``kl = 1 − coverage`` (lower is better). ``feature_coverage`` over ``image_feature`` (each
    image's feature types, names from :data:`FEATURES`) is ``coverage·(0.4 + 0.2·slot)`` with
    ``slot`` the type's position in its image. ``head`` is ``(-1, 0)``. The baseline
    ``baseline:uniform`` has coverage ``0.2 + 0.01·image`` (variant ``frozen``, method
    ``baseline``, layer and head -1).
    """
    rng = np.random.default_rng(seed)
    ids = list(SHIFT_IMAGES)
    names = [*models, "baseline:uniform"]
    methods_all = [*methods, "baseline"]
    layers_all = sorted({-1, *layers})
    heads = [-1, 0]
    shape = (len(names), len(variants), len(methods_all), len(layers_all), len(heads), len(ids))
    cov = np.full(shape, np.nan)
    size = (len(heads), len(ids))
    for mi in range(len(models)):
        for me in range(len(methods)):
            for la in layers:
                li = layers_all.index(la)
                ref = np.round(rng.uniform(0.1, 0.6, size=size), 3)
                for vi, variant in enumerate(variants):
                    if variant == "frozen":
                        shift, sd = 0.0, 0.0
                    elif variant.endswith("_shuffled"):
                        shift, sd = 0.01, 0.03
                    elif mi == 0:
                        shift, sd = 0.05 * (la + 1), 0.01
                    else:
                        shift, sd = (-0.06 if la == max(layers) else 0.0), 0.02
                    noise = np.round(rng.normal(0.0, sd, size=size), 3) if sd else 0.0
                    cov[mi, vi, me, li] = ref + shift + noise
    ui = names.index("baseline:uniform")
    cov[ui, list(variants).index("frozen"), -1, 0, 0] = 0.2 + 0.01 * np.arange(len(ids))
    # image features: each image has the types of its boxes (two per image)
    feat_img, feat_label, feat_name, feat_slot = [], [], [], []
    for iid in ids:
        labels = sorted({b[4] for b in SHIFT_IMAGES[iid][2]})
        for slot, label in enumerate(labels):
            feat_img.append(iid)
            feat_label.append(label)
            feat_name.append(FEATURES[label])
            feat_slot.append(slot)
    rows = np.array([ids.index(i) for i in feat_img])
    fcov = cov[..., rows] * (0.4 + 0.2 * np.asarray(feat_slot))
    pct = np.array([50.0, 90.0])
    dims = ("model", "variant", "method", "layer", "head")
    metric_attrs = {m: {"direction": METRICS_DIRECTION[m]} for m in METRICS_DIRECTION}
    return xr.Dataset(
        {"coverage": ((*dims, "image_id"), cov, metric_attrs["coverage"]),
         "iou": ((*dims, "image_id", "percentile"), cov[..., None] * pct / 100,
                 metric_attrs["iou"]),
         "kl": ((*dims, "image_id"), 1 - cov, metric_attrs["kl"]),
         "feature_coverage": ((*dims, "image_feature"), fcov.astype(np.float32),
                              metric_attrs["feature_coverage"])},
        coords={"model": np.array(names, dtype=object),
                "variant": np.array(variants, dtype=object),
                "method": np.array(methods_all, dtype=object),
                "layer": np.array(layers_all, np.int64), "head": np.array(heads, np.int64),
                "image_id": np.array(ids, dtype=object), "percentile": pct,
                "image_feature": np.arange(len(feat_img)),
                "image_feature_image_id": ("image_feature", np.array(feat_img, dtype=object)),
                "image_feature_label": ("image_feature", np.array(feat_label, np.int64)),
                "image_feature_name": ("image_feature", np.array(feat_name, dtype=object))},
        attrs={"synthetic": True, "store": "test"},
    )


METRICS_DIRECTION = {"coverage": "higher", "iou": "higher", "kl": "lower",
                     "feature_coverage": "higher"}


# ------------------------------------------------------------------------------ Q2 (fine-tuning)
#: Layouts with fine-tuned variants for the dashboard's Q2 view: "vit" has a style-trained
#: variant ("full"), its shuffled-label control and a linear probe; "cnn" has a LoRA variant;
#: "sig" has only "frozen" (it is in no shift row).
Q2_MODELS = (
    ModelLayout("vit", ("cls", "rollout"), (0, 1, 2), (0, 1, 2), (4, 6),
                variants=("frozen", "full", "linear_probe", "full_shuffled")),
    ModelLayout("cnn", ("gradcam",), (1, 2, 3, 4), (), (2, 2), variants=("frozen", "lora")),
    ModelLayout("sig", ("mean_received", "probe"), (0, 1), (0, 1), (3, 3)),
)
#: How strongly each variant's Δ grows with depth in the closed-form shift (see shift_delta).
SHIFT_STRENGTH = {"full": 1.0, "lora": 0.5, "linear_probe": 0.0, "full_shuffled": 0.1}
#: Style variant → its shuffled-label control (the shift Dataset's ``controls`` attr).
SHIFT_CONTROLS = {"full": "full_shuffled"}
#: Best validation accuracy per (model, variant) (the shift Dataset's ``accuracy``).
SHIFT_ACCURACY = {("vit", "full"): 0.93, ("vit", "linear_probe"): 0.61,
                  ("vit", "full_shuffled"): 0.27, ("cnn", "lora"): 0.74}
SHIFT_METRICS = ("iou", "coverage")
SHIFT_HALF_WIDTH = 0.01  # the CI half-width of every shift cell
BEYOND_HALF_WIDTH = 0.012  # ... of every beyond-control cell


def shift_delta(variant: str, layer: int, method_index: int, metric_index: int) -> float:
    """Closed-form Δ (variant − frozen) of a shift cell:
    ``0.03·strength·(layer − 1) + 0.001·method_index + 0.0001·metric_index``, with ``strength``
    from :data:`SHIFT_STRENGTH` and the indices positions in the Dataset's coords."""
    return (0.03 * SHIFT_STRENGTH[variant] * (layer - 1) + 0.001 * method_index
            + 0.0001 * metric_index)


def _effect(low: float, high: float) -> int:
    """Preserve (0) unless the CI excludes 0; then the sign (every test metric is "higher")."""
    return 1 if low > 0 else (-1 if high < 0 else 0)


def build_shift(path: Path, models: Sequence[ModelLayout] = Q2_MODELS, *,
                n_images: int = len(TEST_IMAGES)) -> Path:
    """Write a hand-made shift Dataset (the names pinned in the issue-9 brief; the finetune
    ``shift`` module writes the real one) at ``path`` (``X.shift.zarr``), with xarray.

    Dims ``model, variant`` (non-reference only), ``method, metric, layer`` (unions; NaN where a
    model lacks the cell). Per cell: ``delta`` = :func:`shift_delta`, ``ci_low/high = delta ∓``
    :data:`SHIFT_HALF_WIDTH`, ``effect`` = sign when the CI excludes 0 else 0, ``p_value``
    0.0004 / 0.4 and ``p_holm`` 0.001 / 0.6 (significant / not), ``dz = delta / 0.02``,
    ``n = n_images``, ``reference_mean = 0.2 + 0.01·layer``, ``variant_mean = reference_mean +
    delta``. Beyond the control (style variants of :data:`SHIFT_CONTROLS` only):
    ``beyond_control_delta = delta(v) − delta(control)``, CI ∓ :data:`BEYOND_HALF_WIDTH`,
    ``beyond_control_p_holm`` 0.002 / 0.7. Best layer (per model, variant, method, metric): the
    deepest layer, ``best_delta = delta there + 0.005`` with CI ∓ :data:`SHIFT_HALF_WIDTH`.
    ``accuracy`` (model, variant) from :data:`SHIFT_ACCURACY`. Attrs: ``reference``,
    ``holm_family`` (JSON list), ``controls`` (JSON), ``percentile`` 90, ``directions``."""
    mnames = [m.key for m in models if len(m.variants) > 1]
    variants = list(dict.fromkeys(v for m in models for v in m.variants if v != "frozen"))
    methods = sorted({x for m in models if len(m.variants) > 1 for x in m.methods})
    layers = sorted({la for m in models if len(m.variants) > 1 for la in m.layers})
    shape = (len(mnames), len(variants), len(methods), len(SHIFT_METRICS), len(layers))
    names = ("delta", "ci_low", "ci_high", "p_value", "p_holm", "dz", "n", "reference_mean",
             "variant_mean", "beyond_control_delta", "beyond_control_ci_low",
             "beyond_control_ci_high", "beyond_control_p_value", "beyond_control_p_holm")
    v = {k: np.full(shape, np.nan) for k in names}
    effect = np.zeros(shape, np.int8)
    best = {k: np.full(shape[:-1], np.nan) for k in ("best_layer", "best_delta", "best_ci_low",
                                                     "best_ci_high", "best_p_holm")}
    best_effect = np.zeros(shape[:-1], np.int8)
    acc = np.full(shape[:2], np.nan)
    by_key = {m.key: m for m in models}
    for a, mk in enumerate(mnames):
        layout = by_key[mk]
        for b, var in enumerate(variants):
            if var not in layout.variants:
                continue
            acc[a, b] = SHIFT_ACCURACY.get((mk, var), np.nan)
            for c, meth in enumerate(methods):
                if meth not in layout.methods:
                    continue
                for d in range(len(SHIFT_METRICS)):
                    for la in layout.layers:
                        e = layers.index(la)
                        at = (a, b, c, d, e)
                        delta = shift_delta(var, la, c, d)
                        lo, hi = delta - SHIFT_HALF_WIDTH, delta + SHIFT_HALF_WIDTH
                        sig = _effect(lo, hi) != 0
                        effect[at] = _effect(lo, hi)
                        for k, val in (("delta", delta), ("ci_low", lo), ("ci_high", hi),
                                       ("p_value", 0.0004 if sig else 0.4),
                                       ("p_holm", 0.001 if sig else 0.6), ("dz", delta / 0.02),
                                       ("n", n_images), ("reference_mean", 0.2 + 0.01 * la),
                                       ("variant_mean", 0.2 + 0.01 * la + delta)):
                            v[k][at] = val
                        ctrl = SHIFT_CONTROLS.get(var)
                        if ctrl in layout.variants:
                            bd = delta - shift_delta(ctrl, la, c, d)
                            bsig = abs(bd) > BEYOND_HALF_WIDTH
                            for k, val in (("delta", bd), ("ci_low", bd - BEYOND_HALF_WIDTH),
                                           ("ci_high", bd + BEYOND_HALF_WIDTH),
                                           ("p_value", 0.001 if bsig else 0.5),
                                           ("p_holm", 0.002 if bsig else 0.7)):
                                v[f"beyond_control_{k}"][at] = val
                    deep = max(layout.layers)
                    bd = shift_delta(var, deep, c, d) + 0.005
                    lo, hi = bd - SHIFT_HALF_WIDTH, bd + SHIFT_HALF_WIDTH
                    for k, val in (("best_layer", deep), ("best_delta", bd), ("best_ci_low", lo),
                                   ("best_ci_high", hi),
                                   ("best_p_holm", 0.001 if _effect(lo, hi) else 0.6)):
                        best[k][a, b, c, d] = val
                    best_effect[a, b, c, d] = _effect(lo, hi)
    dims = ("model", "variant", "method", "metric", "layer")
    data = {k: (dims, arr) for k, arr in v.items()}
    data["n"] = (dims, v["n"])
    data["effect"] = (dims, effect, {"flag_values": json.dumps([-1, 0, 1]),
                                     "flag_meanings": "destroy preserve enhance"})
    data.update({k: (dims[:-1], arr) for k, arr in best.items()})
    data["best_effect"] = (dims[:-1], best_effect)
    data["accuracy"] = (("model", "variant"), acc, {"long_name": "best validation accuracy"})
    ds = xr.Dataset(data, coords={
        "model": np.array(mnames, dtype=object), "variant": np.array(variants, dtype=object),
        "method": np.array(methods, dtype=object),
        "metric": np.array(SHIFT_METRICS, dtype=object), "layer": np.array(layers, np.int64)},
        attrs={"title": "ssl-attn fine-tuning shift", "reference": "frozen",
               "holm_family": json.dumps(["layer"]),
               "controls": json.dumps(SHIFT_CONTROLS), "percentile": 90,
               "directions": json.dumps({m: "higher" for m in SHIFT_METRICS}),
               "stats_n_boot": 10000, "stats_seed": 0, "ci": 0.95})
    ds.to_zarr(path, mode="w")
    return Path(path)


def build_q2(data_dir: Path, *, shift: bool = True) -> Fixture:
    """Dataset, store with fine-tuned variants (:data:`Q2_MODELS`, ``stores/q2.zarr``), its
    scores and (when ``shift``) the hand-made shift Dataset ``stores/q2.shift.zarr``
    (:func:`build_shift`; its path is ``extra["shift"]``)."""
    data_dir = Path(data_dir)
    ds_root = build_dataset(data_dir / "synthetic")
    store = build_store(data_dir / "stores" / "q2.zarr", Q2_MODELS, dataset=ds_root)
    sc = build_scores(data_dir / "stores" / "q2.scores.zarr", Q2_MODELS)
    path = data_dir / "stores" / "q2.shift.zarr"
    if shift:
        build_shift(path)
    return Fixture(data_dir, ds_root, store, sc, extra={"shift": path})
