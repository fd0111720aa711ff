"""Spike: can the demo ViT (``demo_vit``) learn the synthetic styles from scratch in ~3 min?

Not a test. It builds the model exactly as extraction does (``ssl_attn.models.load_model(...,
random_init=True)``: transformers ``ViTModel``, eager attention), puts a linear head on the
final CLS token and trains everything with plain torch, in the recipe the project's FineTuner
uses (strategy ``full``): AdamW with separate head / backbone learning rates, linear warm-up
then cosine decay (``transformers.get_cosine_schedule_with_warmup``), gradient clipping,
class-weighted cross-entropy, random resized crop (scale 0.8..1) + horizontal flip + light
colour jitter, evaluation without crop.

Data: a synthetic WikiChurches-format folder of ``139 + pool`` images
(``ssl_attn.synthetic.generate``; generated when missing, timed). The first 139 are annotated:
they are the evaluation set and never trained on. The rest (``WikiChurches.training_pool``) is
split stratified into train / held-out validation. All images are decoded once into a uint8
tensor cache at the input size (the full image resized, no crop, the model's filter), so the
2-core training loop never decodes a JPEG; augmentation runs on the cached tensors.

Architecture flags (``--layers --width --heads --mlp-ratio --patch --size``) override the
registered spec through ``dataclasses.replace``; without them the registered ``demo_vit`` is
trained as it is.

Prints one line per epoch and writes a JSON record (timings with the load average, accuracy
per epoch, on held-out pool images and on the 139 annotated images) to ``--log`` (appended).

    PYTHONPATH=$PWD python benchmarks/demo_model.py --data /tmp/demo --pool 3000 --epochs 10
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import time
from pathlib import Path

import numpy as np


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def build_spec(args: argparse.Namespace):
    """The registered spec, with any architecture flag applied (config and spec fields)."""
    from ssl_attn.models import get_spec

    base = get_spec(args.model)
    cfg = base.config_dict()
    changes = {
        "num_hidden_layers": args.layers,
        "hidden_size": args.width,
        "num_attention_heads": args.heads,
        "patch_size": args.patch,
        "image_size": args.size,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    if args.width is not None:
        changes["pooler_output_size"] = args.width
    width = changes.get("hidden_size", cfg["hidden_size"])
    if args.mlp_ratio is not None or args.width is not None:
        ratio = args.mlp_ratio or cfg["intermediate_size"] / cfg["hidden_size"]
        changes["intermediate_size"] = round(ratio * width)
    if not changes:
        return base
    cfg.update(changes)
    return dataclasses.replace(
        base,
        n_layers=cfg["num_hidden_layers"],
        n_heads=cfg["num_attention_heads"],
        hidden_size=cfg["hidden_size"],
        patch_size=cfg["patch_size"],
        image_size=cfg["image_size"],
        config_overrides=cfg,
    )


def ensure_data(root: Path, n: int, seed: int) -> dict:
    """Generate ``n`` synthetic images into ``root`` unless that exact set is there."""
    from ssl_attn import synthetic

    marker = root / synthetic.MARKER
    if marker.is_file():
        m = json.loads(marker.read_text())
        if m.get("n") == n and m.get("seed") == seed and (root / "churches.json").is_file():
            return {"generated": False}
    load = _load()
    t = time.perf_counter()
    synthetic.generate(root, n=n, seed=seed, progress=False)
    dt = time.perf_counter() - t
    return {"generated": True, "generate_s": round(dt, 1), "generate_img_per_s": round(n / dt, 1),
            "generate_load": load}


def decode_cache(wc, ids: list[str], spec, side: int):
    """uint8 tensor (N, 3, side, side): each full image resized (spec filter), no crop."""
    import torch

    from ssl_attn.models.preprocess import _PIL_FILTERS

    out = torch.empty((len(ids), 3, side, side), dtype=torch.uint8)
    for i, iid in enumerate(ids):
        img = wc.load_image(iid, max_side=side).convert("RGB")
        img = img.resize((side, side), resample=_PIL_FILTERS[spec.resample])
        out[i] = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)
    return out


def augment(x, gen, size: int, crop_scale: tuple[float, float], hflip: float, jitter: float):
    """Random resized crop (area ``crop_scale``, ratio 3/4..4/3) + flip + colour jitter.

    Batched (one ``affine_grid`` / ``grid_sample`` call, bilinear), because a per-image
    torchvision loop costs as much as the model step on 2 cores. The jitter scales brightness,
    contrast (around each image's mean grey) and saturation (around its grey image) by factors
    uniform in ``1 ± jitter``, as torchvision's ``ColorJitter`` does.
    ``x``: uint8 (B, 3, S, S) -> float32 in [0, 1], (B, 3, size, size).
    """
    import torch
    from torch.nn import functional as tf

    b = x.shape[0]
    r = torch.rand((b, 8), generator=gen)
    area = crop_scale[0] + (crop_scale[1] - crop_scale[0]) * r[:, 0]
    log_ratio = np.log(3 / 4) + (np.log(4 / 3) - np.log(3 / 4)) * r[:, 1]
    ratio = torch.exp(log_ratio)
    sw = torch.sqrt(area * ratio).clamp(max=1.0)  # crop width / image width
    sh = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (2 * r[:, 2] - 1) * (1 - sw)  # crop centre in [-1, 1] coordinates
    cy = (2 * r[:, 3] - 1) * (1 - sh)
    flip = torch.where(r[:, 4] < hflip, -1.0, 1.0)
    theta = torch.zeros((b, 2, 3))
    theta[:, 0, 0] = sw * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = sh
    theta[:, 1, 2] = cy
    grid = tf.affine_grid(theta, [b, 3, size, size], align_corners=False)
    img = tf.grid_sample(x.float() / 255.0, grid, mode="bilinear", padding_mode="border",
                        align_corners=False)
    if jitter > 0:
        f = 1 + jitter * (2 * r[:, 5:8] - 1)  # brightness, contrast, saturation factors
        img = (img * f[:, 0].view(b, 1, 1, 1)).clamp_(0, 1)
        lum = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        grey_mean = (img * lum).sum(1, keepdim=True).mean((2, 3), keepdim=True)
        img = ((img - grey_mean) * f[:, 1].view(b, 1, 1, 1) + grey_mean).clamp_(0, 1)
        grey = (img * lum).sum(1, keepdim=True)
        img = ((img - grey) * f[:, 2].view(b, 1, 1, 1) + grey).clamp_(0, 1)
    return img


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path("data/demo_model"),
                   help="synthetic set (generated when absent): 139 annotated + --pool")
    p.add_argument("--pool", type=int, default=3000, help="training-pool images (besides 139)")
    p.add_argument("--gen-seed", type=int, default=11)
    p.add_argument("--model", default="demo_vit")
    p.add_argument("--layers", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--heads", type=int)
    p.add_argument("--mlp-ratio", type=float)
    p.add_argument("--patch", type=int)
    p.add_argument("--size", type=int)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr-head", type=float, default=2e-3)
    p.add_argument("--lr-backbone", type=float, default=2e-3)
    p.add_argument("--wd", type=float, default=0.05)
    p.add_argument("--warmup", type=float, default=0.1, help="warm-up fraction of all steps")
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--crop-min", type=float, default=0.8)
    p.add_argument("--hflip", type=float, default=0.5)
    p.add_argument("--jitter", type=float, default=0.2)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast on CPU")
    p.add_argument("--budget-s", type=float, default=None,
                   help="stop training once this many training seconds are spent")
    p.add_argument("--eval-annotated-every", action="store_true",
                   help="evaluate the 139 annotated images after every epoch (else at the end)")
    p.add_argument("--log", type=Path, default=Path("/tmp/demo_model.jsonl"))
    p.add_argument("--tag", default="")
    args = p.parse_args()

    import torch
    from sklearn.model_selection import train_test_split
    from transformers import get_cosine_schedule_with_warmup

    from ssl_attn.models import load_model
    from ssl_attn.wikichurches import WikiChurches

    torch.set_num_threads(args.threads)
    record: dict = {"tag": args.tag, "args": {k: str(v) if isinstance(v, Path) else v
                                              for k, v in vars(args).items()}}
    record["load_start"] = _load()
    record.update(ensure_data(args.data, 139 + args.pool, args.gen_seed))

    spec = build_spec(args)
    size = spec.image_size
    wc = WikiChurches(args.data)
    pool = wc.training_pool()
    classes = list(wc.rule.main_styles)
    cls_index = {q: i for i, q in enumerate(classes)}
    ids = pool["image_id"].tolist()
    y = np.array([cls_index[s] for s in pool["style"]])
    tr_ids, va_ids, y_tr, y_va = train_test_split(
        ids, y, test_size=args.val_fraction, stratify=y, random_state=args.seed)
    ann = wc.images.dropna(subset=["style"])
    an_ids = ann["image_id"].tolist()
    y_an = np.array([cls_index[s] for s in ann["style"]])

    t = time.perf_counter()
    c0 = _cpu_s()
    x_tr = decode_cache(wc, tr_ids, spec, size)
    x_va = decode_cache(wc, va_ids, spec, size)
    x_an = decode_cache(wc, an_ids, spec, size)
    record["cache_s"] = round(time.perf_counter() - t, 1)
    record["cache_cpu_s"] = round(_cpu_s() - c0, 1)
    record.update(n_train=len(tr_ids), n_val=len(va_ids), n_annotated=len(an_ids))

    loaded = load_model(spec, random_init=True, seed=args.seed)
    backbone = loaded.model.train()
    torch.manual_seed(args.seed)
    head = torch.nn.Linear(spec.hidden_size, len(classes))
    n_params = sum(q.numel() for q in backbone.parameters())
    record["spec"] = {"layers": spec.n_layers, "width": spec.hidden_size, "heads": spec.n_heads,
                      "patch": spec.patch_size, "size": size,
                      "intermediate": spec.config_overrides["intermediate_size"],
                      "tokens": (size // spec.patch_size) ** 2 + 1, "params": n_params}

    def decay(name: str, q: torch.Tensor) -> bool:
        return q.ndim >= 2 and "position_embeddings" not in name and "cls_token" not in name

    named = list(backbone.named_parameters())
    groups = [
        {"params": [q for n, q in named if decay(n, q)], "lr": args.lr_backbone,
         "weight_decay": args.wd},
        {"params": [q for n, q in named if not decay(n, q)], "lr": args.lr_backbone,
         "weight_decay": 0.0},
        {"params": [head.weight], "lr": args.lr_head, "weight_decay": args.wd},
        {"params": [head.bias], "lr": args.lr_head, "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups)
    steps_per_epoch = len(tr_ids) // args.batch  # drop_last
    total = steps_per_epoch * args.epochs
    sched = get_cosine_schedule_with_warmup(opt, round(args.warmup * total), total)
    counts = np.bincount(y_tr, minlength=len(classes)).astype(np.float64)
    weights = torch.tensor(counts.sum() / (len(classes) * counts), dtype=torch.float32)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    mean = torch.tensor(spec.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.image_std).view(1, 3, 1, 1)
    y_tr_t = torch.from_numpy(y_tr)

    def logits_of(pv: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            out = loaded.forward(pv)
            return head(out.last_hidden_state[:, 0]).float()

    @torch.no_grad()
    def evaluate(x: torch.Tensor, yy: np.ndarray) -> tuple[float, float]:
        backbone.eval()
        preds = []
        for i in range(0, len(x), 128):
            pv = ((x[i : i + 128].float() / 255.0) - mean) / std
            preds.append(logits_of(pv).argmax(-1))
        backbone.train()
        pred = torch.cat(preds).numpy()
        acc = float((pred == yy).mean())
        bacc = float(np.mean([(pred[yy == c] == c).mean() for c in np.unique(yy)]))
        return acc, bacc

    gen = torch.Generator().manual_seed(args.seed)
    history = []
    train_s = train_cpu = aug_s = eval_s = 0.0
    step = 0
    record["load_train_start"] = _load()
    stopped = False
    for epoch in range(args.epochs):
        perm = torch.randperm(len(tr_ids), generator=gen)
        t_ep, c_ep = time.perf_counter(), _cpu_s()
        loss_sum = correct = seen = 0
        for b in range(steps_per_epoch):
            idx = perm[b * args.batch : (b + 1) * args.batch]
            ta = time.perf_counter()
            pv = (augment(x_tr[idx], gen, size, (args.crop_min, 1.0), args.hflip, args.jitter)
                  - mean) / std
            aug_s += time.perf_counter() - ta
            yb = y_tr_t[idx]
            logits = logits_of(pv)
            loss = loss_fn(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(
                [q for g in groups for q in g["params"]], args.clip)
            opt.step()
            sched.step()
            step += 1
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(-1) == yb).sum())
            seen += len(idx)
            if args.budget_s and train_s + time.perf_counter() - t_ep > args.budget_s:
                stopped = True
                break
        ep_s = time.perf_counter() - t_ep
        train_s += ep_s
        train_cpu += _cpu_s() - c_ep
        te = time.perf_counter()
        val_acc, val_bacc = evaluate(x_va, y_va)
        row = {"epoch": epoch + 1, "step": step, "train_loss": round(loss_sum / seen, 4),
               "train_acc": round(correct / seen, 4), "val_acc": round(val_acc, 4),
               "val_bacc": round(val_bacc, 4), "train_s": round(train_s, 1),
               "img_per_s": round(seen / ep_s, 1), "load": _load()}
        if args.eval_annotated_every or epoch == args.epochs - 1 or stopped:
            row["annotated_acc"] = round(evaluate(x_an, y_an)[0], 4)
        eval_s += time.perf_counter() - te
        history.append(row)
        print(json.dumps(row), flush=True)
        if stopped:
            break
    record.update(
        history=history, steps=step, stopped_by_budget=stopped, train_s=round(train_s, 1),
        train_cpu_s=round(train_cpu, 1), augment_s=round(aug_s, 1), eval_s=round(eval_s, 1),
        final_val_acc=history[-1]["val_acc"], final_annotated_acc=history[-1]["annotated_acc"],
        best_val_acc=max(r["val_acc"] for r in history), load_end=_load(),
        torch_threads=torch.get_num_threads(),
    )
    print(json.dumps({k: v for k, v in record.items() if k != "history"}), flush=True)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with args.log.open("a") as f:
        f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
