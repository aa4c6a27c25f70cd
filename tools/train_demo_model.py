"""Train the demo defect detector on generated images and export it as a YOLOv8-layout ONNX model.

The network is a small conv-BN-SiLU residual CNN: backbone to stride 32, FPN-style neck down to a
single stride-8 head, plus a stride-4 detail branch merged into that head so 1-3 px scratches keep
their signal. Boxes are decoded inside the graph, so the ONNX output is ``[1, 4 + C, N]``: cx, cy,
w, h in input pixels followed by sigmoid class scores (no objectness), which is what the product's
YOLOv8 adapter reads. Input: ``images`` float32 ``[1, 3, S, S]``, RGB / 255, letterboxed with 114.

Training: centre sampling (cells within 1.5 strides of a box centre), quality focal loss on IoU
targets + 2 x GIoU + 0.5 x L1, dihedral flips/rotations, gain/offset/tint/noise jitter, AdamW with
warm-up then cosine over a wall-clock budget, EMA weights. Runs on CPU (bf16 autocast where the CPU
has native bf16) and uses CUDA when present.

    python tools/train_demo_model.py --minutes 30 --out edge_assets/models/demo-defects/1/
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import multiprocessing as mp
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import cv2
import numpy as np
import onnx
import torch
import torch.nn.functional as F
import yaml
from onnx import numpy_helper
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mfgvision.evaluation import Prediction, evaluate, mean_ap
from mfgvision.inference import load_model
from mfgvision.inference.letterbox import letterbox
from mfgvision.inference.nms import cxcywh_to_xyxy, nms
from mfgvision.synthetic import (
    CLASS_NAMES,
    SPLIT_SEEDS,
    generate_sample,
    sample_rng,
    write_yolo_dataset,
)

STRIDE = 8
PAD_VALUE = 114
TRAIN_ASPECTS = ((1.0, 0.7), (0.75, 0.15), (0.5625, 0.15))
"""(height / width, share) of the training images; wide frames are letterboxed like the product."""


# --- data -------------------------------------------------------------------------------------


def _make_item(job: tuple[int, int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One letterboxed RGB training image and its boxes ``[n, 5]`` (class, x1, y1, x2, y2)."""
    seed, index, size, w, h = job
    img, boxes = generate_sample(sample_rng(seed, index), (w, h))
    lb, tf = letterbox(img, (size, size), (PAD_VALUE,) * 3)
    arr = np.array(boxes, np.float32).reshape(-1, 5)
    arr[:, [1, 3]] = arr[:, [1, 3]] * tf.scale_x + tf.pad_x
    arr[:, [2, 4]] = arr[:, [2, 4]] * tf.scale_y + tf.pad_y
    return cv2.cvtColor(lb, cv2.COLOR_BGR2RGB), arr


def build_split(
    seed: int, count: int, size: int, cache: Path, mixed: bool
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Generate (or load from ``cache``) a split as uint8 RGB ``[N, S, S, 3]`` plus boxes."""
    stem = cache / f"split_{seed}_{count}_{size}_{int(mixed)}"
    if stem.with_suffix(".npy").exists() and stem.with_suffix(".npz").exists():
        boxes = np.load(stem.with_suffix(".npz"))
        return np.load(stem.with_suffix(".npy")), [boxes[f"b{i}"] for i in range(count)]
    rng = np.random.default_rng(seed)
    ratios, shares = zip(*TRAIN_ASPECTS, strict=True)
    jobs = []
    for i in range(count):
        ratio = float(rng.choice(ratios, p=shares)) if mixed else 1.0
        w, h = (size, round(size * ratio)) if rng.random() < 0.5 else (round(size * ratio), size)
        jobs.append((seed, i, size, w, h))
    with mp.get_context("fork").Pool(max(1, os.cpu_count() or 1)) as pool:
        items = pool.map(_make_item, jobs, chunksize=32)
    images = np.stack([im for im, _ in items])
    boxes = [b for _, b in items]
    cache.mkdir(parents=True, exist_ok=True)
    np.save(stem.with_suffix(".npy"), images)
    np.savez(stem.with_suffix(".npz"), **{f"b{i}": b for i, b in enumerate(boxes)})
    return images, boxes


def dihedral(image: np.ndarray, boxes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Apply one of the 8 square symmetries (k in 0..7) to an image and its xyxy boxes."""
    s = image.shape[0]
    b = boxes.copy()
    if k & 4:
        image = image[:, ::-1]
        b[:, [1, 3]] = s - boxes[:, [3, 1]]
    for _ in range(k & 3):
        image = np.rot90(image)
        x1, y1, x2, y2 = b[:, 1].copy(), b[:, 2].copy(), b[:, 3].copy(), b[:, 4].copy()
        b[:, 1], b[:, 2], b[:, 3], b[:, 4] = y1, s - x2, y2, s - x1
    return np.ascontiguousarray(image), b


def crop(
    image: np.ndarray, boxes: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` square crop at the same pixel scale, usually around a random defect.

    Boxes are clipped to the crop; slivers under a quarter of their area or 2 px are dropped.
    """
    full = image.shape[0]
    if len(boxes) and rng.random() < 0.8:
        b = boxes[rng.integers(len(boxes))]
        cx, cy = (b[1] + b[3]) / 2, (b[2] + b[4]) / 2
        x0 = int(np.clip(cx - rng.uniform(0.15, 0.85) * size, 0, full - size))
        y0 = int(np.clip(cy - rng.uniform(0.15, 0.85) * size, 0, full - size))
    else:
        x0, y0 = (int(v) for v in rng.integers(0, full - size + 1, 2))
    out = boxes.copy()
    out[:, [1, 3]] = np.clip(boxes[:, [1, 3]] - x0, 0, size)
    out[:, [2, 4]] = np.clip(boxes[:, [2, 4]] - y0, 0, size)
    w, h = out[:, 3] - out[:, 1], out[:, 4] - out[:, 2]
    area = (boxes[:, 3] - boxes[:, 1]) * (boxes[:, 4] - boxes[:, 2])
    keep = (w >= 2) & (h >= 2) & (w * h >= 0.25 * area)
    return image[y0 : y0 + size, x0 : x0 + size], out[keep]


def make_batch(
    images: np.ndarray,
    boxes: list[np.ndarray],
    idx: np.ndarray,
    rng: np.random.Generator,
    crop_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented float batch ``[B, 3, s, s]`` and padded targets ``[B, M, 5]`` (class -1 = none)."""
    ims, tgts = [], []
    for i in idx:
        im, b = dihedral(images[i], boxes[i], int(rng.integers(8)))
        if crop_size < im.shape[0]:
            im, b = crop(im, b, crop_size, rng)
        ims.append(im)
        tgts.append(b)
    x = torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2).float().div_(255.0)
    n = len(idx)
    gain = torch.from_numpy(rng.uniform(0.7, 1.3, (n, 1, 1, 1)).astype(np.float32))
    offset = torch.from_numpy(rng.uniform(-0.1, 0.1, (n, 1, 1, 1)).astype(np.float32))
    tint = torch.from_numpy(rng.uniform(0.93, 1.07, (n, 3, 1, 1)).astype(np.float32))
    sigma = torch.from_numpy(rng.uniform(0.0, 0.03, (n, 1, 1, 1)).astype(np.float32))
    x = x * gain * tint + offset + torch.randn_like(x[:, :1]) * sigma
    m = max(1, max(len(b) for b in tgts))
    t = torch.full((n, m, 5), -1.0)
    for j, b in enumerate(tgts):
        if len(b):
            t[j, : len(b)] = torch.from_numpy(b)
    return x.clamp_(0.0, 1.0), t


# --- model ------------------------------------------------------------------------------------


class ConvBN(nn.Sequential):
    """Conv2d without bias, BatchNorm, SiLU."""

    def __init__(self, cin: int, cout: int, k: int = 3, s: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout), nn.SiLU()
        )


class Residual(nn.Module):
    """Two 3x3 ConvBN with an identity shortcut."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(ConvBN(c, c), ConvBN(c, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` plus the two convolutions of ``x``."""
        return x + self.body(x)


def stage(cin: int, cout: int, blocks: int) -> nn.Sequential:
    """A stride-2 ConvBN followed by ``blocks`` residual blocks."""
    return nn.Sequential(ConvBN(cin, cout, 3, 2), *[Residual(cout) for _ in range(blocks)])


class DefectNet(nn.Module):
    """Backbone to stride 32, FPN neck to stride 8, stride-4 detail branch, decoupled head."""

    def __init__(self, num_classes: int, width: int = 48) -> None:
        super().__init__()
        c = width
        self.stem = nn.Sequential(ConvBN(3, c // 4, 3, 2), ConvBN(c // 4, c // 2, 3, 2))
        self.c4 = Residual(c // 2)
        self.c8 = stage(c // 2, c, 2)
        self.c16 = stage(c, 2 * c, 2)
        self.c32 = stage(2 * c, 3 * c, 1)
        self.lat32 = ConvBN(3 * c, 2 * c, 1)
        self.fuse16 = nn.Sequential(ConvBN(4 * c, 2 * c, 1), Residual(2 * c))
        self.lat16 = ConvBN(2 * c, c, 1)
        self.detail = ConvBN(c // 2, c, 3, 2)
        self.fuse8 = nn.Sequential(ConvBN(3 * c, c, 1), Residual(c))
        self.cls_head = nn.Sequential(ConvBN(c, c), nn.Conv2d(c, num_classes, 1))
        self.reg_head = nn.Sequential(ConvBN(c, c), nn.Conv2d(c, 4, 1))
        prior = -math.log((1 - 0.01) / 0.01)
        nn.init.constant_(self.cls_head[-1].bias, prior)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw class logits ``[B, C, H, W]`` and box offsets ``[B, 4, H, W]`` at stride 8."""
        f4 = self.c4(self.stem(x))
        f8 = self.c8(f4)
        f16 = self.c16(f8)
        p32 = self.lat32(self.c32(f16))
        p16 = self.fuse16(torch.cat([F.interpolate(p32, scale_factor=2.0), f16], 1))
        up = F.interpolate(self.lat16(p16), scale_factor=2.0)
        p8 = self.fuse8(torch.cat([up, f8, self.detail(f4)], 1))
        return self.cls_head(p8), self.reg_head(p8)


def grid_centres(h: int, w: int, device: torch.device) -> torch.Tensor:
    """Cell centres ``[H * W, 2]`` in input pixels, row-major."""
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij"
    )
    return (torch.stack([xs, ys], -1).reshape(-1, 2).float() + 0.5) * STRIDE


def decode(reg: torch.Tensor) -> torch.Tensor:
    """Box offsets ``[B, 4, H, W]`` to cx, cy, w, h ``[B, N, 4]`` in input pixels."""
    h, w = reg.shape[2:]
    r = reg.float().flatten(2).transpose(1, 2)
    centre = grid_centres(h, w, reg.device) + r[..., :2] * STRIDE
    size = torch.exp(r[..., 2:].clamp(-6.0, 6.0)) * STRIDE
    return torch.cat([centre, size], -1)


class ExportWrapper(nn.Module):
    """Adds in-graph decoding: output ``[1, 4 + C, N]`` as a YOLOv8 export would give."""

    def __init__(self, net: DefectNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Boxes and class probabilities for a batch of letterboxed RGB images in [0, 1]."""
        cls, reg = self.net(images)
        scores = torch.sigmoid(cls.flatten(2))
        return torch.cat([decode(reg).transpose(1, 2), scores], 1)


# --- loss -------------------------------------------------------------------------------------


def xyxy(b: torch.Tensor) -> torch.Tensor:
    """cx, cy, w, h to x1, y1, x2, y2."""
    return torch.cat([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], -1)


def box_iou_giou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Element-wise IoU and GIoU of xyxy boxes ``[K, 4]``."""
    lt, rb = torch.max(a[:, :2], b[:, :2]), torch.min(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(1)
    union = area_a + area_b - inter + 1e-7
    iou = inter / union
    hull = (torch.max(a[:, 2:], b[:, 2:]) - torch.min(a[:, :2], b[:, :2])).prod(1) + 1e-7
    return iou, iou - (hull - union) / hull


def assign(targets: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre sampling: each cell within 1.5 strides of a box centre takes the smallest such box.

    Returns the positive mask ``[B, N]`` and the chosen target index ``[B, N]``.
    """
    valid = targets[..., 0] >= 0
    ctr = (targets[..., 1:3] + targets[..., 3:5]) / 2
    delta = (centres[None, None] - ctr[:, :, None]).abs()
    near = (delta < 1.5 * STRIDE).all(-1) & valid[..., None]
    area = (targets[..., 3] - targets[..., 1]) * (targets[..., 4] - targets[..., 2])
    cost = torch.where(near, area[..., None], torch.full_like(area[..., None], float("inf")))
    best, index = cost.min(1)
    return torch.isfinite(best), index


def detection_loss(
    cls: torch.Tensor, reg: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """Quality focal loss on IoU targets + 2 x GIoU + 0.5 x L1 (in strides), per positive."""
    h, w = cls.shape[2:]
    logits = cls.float().flatten(2).transpose(1, 2)
    boxes = xyxy(decode(reg))
    pos, index = assign(targets, grid_centres(h, w, cls.device))
    chosen = torch.gather(targets, 1, index[..., None].expand(-1, -1, 5))
    num_pos = max(int(pos.sum()), 1)
    pred_pos, gt_pos = boxes[pos], chosen[pos][:, 1:]
    iou, giou = box_iou_giou(pred_pos, gt_pos)
    score = torch.zeros_like(logits)
    score[pos, chosen[pos][:, 0].long()] = iou.detach().clamp(min=0.0)
    modulator = (logits.sigmoid() - score).abs().pow(2)
    qfl = (F.binary_cross_entropy_with_logits(logits, score, reduction="none") * modulator).sum()
    l_qfl = qfl / num_pos
    l_giou = (1.0 - giou).sum() / num_pos
    l_l1 = (pred_pos - gt_pos).abs().sum() / STRIDE / num_pos
    total = l_qfl + 2.0 * l_giou + 0.5 * l_l1
    parts = {"qfl": l_qfl.item(), "giou": l_giou.item(), "l1": l_l1.item()}
    return total, parts


# --- training ---------------------------------------------------------------------------------


class Ema:
    """Exponential moving average of weights and buffers, with a warm-up on the decay."""

    def __init__(self, model: nn.Module, decay: float = 0.998, tau: float = 200.0) -> None:
        self.model = copy.deepcopy(model).eval()
        self.decay, self.tau, self.updates = decay, tau, 0
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``'s current weights and buffers."""
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        live = model.state_dict()
        for k, v in self.model.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(live[k].detach(), alpha=1 - d)
            else:
                v.copy_(live[k])


def pick_device_and_precision(choice: str) -> tuple[torch.device, torch.dtype | None]:
    """CUDA when present; bf16 autocast when asked or, on ``auto``, when the CPU has native bf16."""
    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16 if choice != "fp32" else None
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    use = choice == "bf16" or (choice == "auto" and native)
    return torch.device("cpu"), torch.bfloat16 if use else None


def learning_rate(base: float, frac: float, step: int, warmup_steps: int) -> float:
    """Linear warm-up over the first steps, then cosine to 5% over the time budget."""
    warm = min(1.0, (step + 1) / warmup_steps)
    return base * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def postprocess(out: np.ndarray, conf: float, iou_threshold: float) -> list[Prediction]:
    """One ``[4 + C, N]`` output to predictions in input pixels, as the product's adapter does."""
    scores = out[4:].T
    cls = scores.argmax(1)
    best = scores.max(1)
    keep = best > conf
    boxes = cxcywh_to_xyxy(out[:4].T[keep])
    cls, best = cls[keep], best[keep]
    picked = nms(boxes, best, cls, iou_threshold)
    return [(int(cls[k]), float(best[k]), *map(float, boxes[k])) for k in picked]


@torch.no_grad()
def evaluate_torch(
    model: nn.Module, images: np.ndarray, boxes: list[np.ndarray], device: torch.device
) -> dict:
    """mAP50 of the in-memory model on letterboxed images (conf 0.25, NMS IoU 0.45)."""
    wrapper = ExportWrapper(model).eval()
    preds = []
    for start in range(0, len(images), 16):
        chunk = torch.from_numpy(images[start : start + 16]).permute(0, 3, 1, 2).float() / 255
        outs = wrapper(chunk.to(device)).cpu().numpy()
        preds += [postprocess(o, 0.25, 0.45) for o in outs]
    gts = [[(int(r[0]), *map(float, r[1:])) for r in b] for b in boxes]
    return mean_ap(preds, gts, CLASS_NAMES)


def export_onnx(model: nn.Module, path: Path, size: int) -> None:
    """Export the fp32 network with in-graph decoding (opset 17, static 1x3xSxS ``images``)."""
    wrapper = ExportWrapper(copy.deepcopy(model).float().cpu()).eval()
    dummy = torch.zeros(1, 3, size, size)
    torch.onnx.export(
        wrapper,
        (dummy,),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["images"],
        output_names=["output0"],
    )


def train(args: argparse.Namespace) -> tuple[nn.Module, dict]:
    """Generate data, train for ``args.minutes`` of wall clock; return the EMA model and stats."""
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    device, amp = pick_device_and_precision(args.precision)
    t0 = time.time()
    cache = Path(args.cache_dir)
    images, boxes = build_split(
        SPLIT_SEEDS["train"], args.train_images, args.input_size, cache, True
    )
    val_images, val_boxes = build_split(
        SPLIT_SEEDS["val"], args.val_images, args.input_size, cache, False
    )
    gen_minutes = (time.time() - t0) / 60
    print(
        f"data ready: {len(images)} train / {len(val_images)} val in {gen_minutes:.1f} min",
        flush=True,
    )
    precision = "bf16 autocast" if amp else "fp32"
    model = DefectNet(len(CLASS_NAMES), args.width).to(device)
    earlier: list[dict] = []
    if args.init and args.init.suffix == ".onnx":
        calibration, _ = make_batch(images, boxes, rng.integers(0, len(images), 64), rng, args.crop)
        earlier = load_onnx_weights(model.cpu(), args.init, calibration)
        model.to(device)
    elif args.init:
        saved = torch.load(args.init, map_location=device)
        model.load_state_dict(saved["state_dict"])
        earlier = saved["stages"]
    ema = Ema(model)
    params = sum(p.numel() for p in model.parameters())
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
    )
    budget = args.minutes * 60.0
    start, step, next_eval = time.time(), 0, args.eval_every * 60.0
    history = []
    while (elapsed := time.time() - start) < budget:
        lr = learning_rate(args.lr, elapsed / budget, step, args.warmup_steps)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = rng.integers(0, len(images), args.batch)
        x, t = make_batch(images, boxes, idx, rng, args.crop)
        model.train()
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            cls, reg = model(x.to(device))
        loss, parts = detection_loss(cls, reg, t.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        ema.update(model)
        step += 1
        if step % 25 == 0:
            print(
                f"step {step} {elapsed / 60:.1f} min lr {lr:.2e} loss {loss.item():.3f} "
                + " ".join(f"{k} {v:.3f}" for k, v in parts.items()),
                flush=True,
            )
        if elapsed >= next_eval:
            next_eval += args.eval_every * 60.0
            report = evaluate_torch(ema.model, val_images, val_boxes, device)
            history.append({"minutes": round(elapsed / 60, 1), "step": step, **report})
            print(f"val {json.dumps(history[-1])}", flush=True)
            save_weights(
                cache / "last_checkpoint.pt", ema.model, earlier, elapsed / 60, step, precision
            )
    train_minutes = (time.time() - start) / 60
    final = evaluate_torch(ema.model, val_images, val_boxes, device)
    history.append({"minutes": round(train_minutes, 1), "step": step, **final})
    print(f"val {json.dumps(history[-1])}", flush=True)
    stages = save_weights(args.weights, ema.model, earlier, train_minutes, step, precision)
    stats = {
        "parameters": params,
        "stages": stages,
        "steps": step,
        "train_minutes": round(train_minutes, 1),
        "data_minutes": round(gen_minutes, 1),
        "device": str(device),
        "val_history": history,
    }
    return ema.model, stats


@torch.no_grad()
def load_onnx_weights(model: DefectNet, path: Path, calibration: torch.Tensor) -> list[dict]:
    """Load a ``DefectNet`` exported by this tool back from its ONNX file; return its stages.

    The export folds each batch norm into its convolution. The convolutions get the folded weights
    exactly; each batch norm gets the mean and variance its convolution produces on
    ``calibration`` (a training batch) with the affine part chosen so that the network computes the
    same function, so training resumes with batch statistics close to the running ones. The stages
    come from the ``model.yaml`` beside the file, when there is one.
    """
    graph = onnx.load(str(path)).graph
    weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
    nodes = [n for n in graph.node if n.op_type == "Conv"]
    order: list[nn.Conv2d] = []
    hooks = [
        m.register_forward_hook(lambda m, _i, _o: order.append(m))
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]
    model.eval()(calibration[:1])
    for h in hooks:
        h.remove()
    if len(order) != len(nodes):
        raise ValueError(f"{path}: {len(nodes)} convolutions, the network has {len(order)}")
    norms = {id(m[0]): m[1] for m in model.modules() if isinstance(m, ConvBN)}
    folded_bias = {}
    for conv, node in zip(order, nodes, strict=True):
        weight, bias = weights[node.input[1]], weights[node.input[2]]
        if weight.shape != conv.weight.shape:
            raise ValueError(
                f"{path}: {node.name} is {tuple(weight.shape)}, expected "
                f"{tuple(conv.weight.shape)} (another --width?)"
            )
        conv.weight.copy_(weight)
        if id(conv) in norms:
            bn = norms[id(conv)]
            bn.weight.fill_(1.0)
            bn.bias.copy_(bias)
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
            folded_bias[id(conv)] = bias
        else:
            conv.bias.copy_(bias)
    outputs: dict[int, torch.Tensor] = {}
    hooks = [
        conv.register_forward_hook(lambda m, _i, o: outputs.__setitem__(id(m), o))
        for conv in order
        if id(conv) in norms
    ]
    model(calibration)
    for h in hooks:
        h.remove()
    for key, bn in norms.items():
        mean, var = outputs[key].mean((0, 2, 3)), outputs[key].var((0, 2, 3), unbiased=False)
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.weight.copy_(torch.sqrt(var + bn.eps))
        bn.bias.copy_(folded_bias[key] + mean)
    card = path.with_name("model.yaml")
    return yaml.safe_load(card.read_text())["training"]["stages"] if card.exists() else []


def save_weights(
    path: Path, model: nn.Module, earlier: list[dict], minutes: float, steps: int, precision: str
) -> list[dict]:
    """Save EMA weights with every training stage so far; return those stages.

    Each stage records its command, minutes, steps, precision and machine, since stages of one
    model may run on different machines.
    """
    stage = {
        "command": "python tools/train_demo_model.py " + " ".join(sys.argv[1:]),
        "minutes": round(minutes, 1),
        "steps": steps,
        "precision": precision,
        "machine": machine_description(),
    }
    stages = [*earlier, stage]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "stages": stages}, path)
    return stages


def machine_description() -> str:
    """CPU model, core count and native bf16 support (or the GPU), for the model card."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA), host {cpu}"
    native = [
        name
        for name, present in (
            ("AVX512-BF16", torch.cpu._is_avx512_bf16_supported()),
            ("AMX", torch.cpu._is_amx_tile_supported()),
        )
        if present
    ]
    bf16 = ", ".join(native) if native else "no native bf16"
    return f"{cpu}, {os.cpu_count()} cores, {platform.machine()}, {bf16}"


def model_card(args: argparse.Namespace, stats: dict) -> dict:
    """The ``model.yaml`` content: the keys the product reads plus a description of the model."""
    size = args.input_size
    shares = ", ".join(f"{share:.0%} at h/w {ratio:g}" for ratio, share in TRAIN_ASPECTS)
    return {
        "name": args.name,
        "version": str(args.version),
        "family": "yolov8",
        "classes": list(CLASS_NAMES),
        "input_size": [size, size],
        "normalise": {"scale": 255, "mean": [0, 0, 0], "std": [1, 1, 1], "channel_order": "RGB"},
        "resize": "letterbox",
        "letterbox_colour": PAD_VALUE,
        "input": {"name": "images", "shape": [1, 3, size, size], "dtype": "float32"},
        "output": {
            "shape": [1, 4 + len(CLASS_NAMES), (size // STRIDE) ** 2],
            "layout": "cx, cy, w, h in input pixels, then one sigmoid score per class; "
            "no objectness",
        },
        "architecture": "residual conv-BN-SiLU CNN, stride-8 head with a stride-4 detail branch, "
        f"{stats['parameters']} parameters",
        "training": {
            "data": f"{args.train_images} images from mfgvision.synthetic (train seed "
            f"{SPLIT_SEEDS['train']}; {shares}), letterboxed to {size}, {args.crop} px crops",
            "stages": stats["stages"],
            "minutes": round(sum(st["minutes"] for st in stats["stages"]), 1),
            "steps": sum(st["steps"] for st in stats["stages"]),
            "batch": args.batch,
            "torch": str(torch.__version__),
        },
        "licence": "MIT",
        "date": date.today().isoformat(),
    }


def write_card(out: Path, card: dict) -> None:
    """Write ``model.yaml``."""
    text = yaml.safe_dump(card, sort_keys=False, width=100, default_flow_style=False)
    (out / "model.yaml").write_text(text)


def write_golden(model_dir: Path, size: int) -> dict:
    """Save one generated frame with every class as ``golden.jpg`` and the model's detections.

    ``golden.json`` holds the ground truth and what the product's engine returns for the saved
    file at probability 0.25 and NMS IoU 0.45, so later changes can be checked against it.
    """
    index = 0
    while True:
        img, boxes = generate_sample(sample_rng(SPLIT_SEEDS["samples"], index), (size, size))
        if {b[0] for b in boxes} == set(range(len(CLASS_NAMES))):
            break
        index += 1
    cv2.imwrite(str(model_dir / "golden.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    frame = cv2.imread(str(model_dir / "golden.jpg"))
    result = load_model(model_dir).detect(frame, prob_threshold=0.25, iou_threshold=0.45)
    golden = {
        "image": "golden.jpg",
        "source": f"mfgvision.synthetic samples seed {SPLIT_SEEDS['samples']}, index {index}",
        "prob_threshold": 0.25,
        "iou_threshold": 0.45,
        "ground_truth": [
            {"label_id": c, "label": CLASS_NAMES[c], "box": [round(v, 1) for v in box]}
            for c, *box in boxes
        ],
        "detections": [d.to_dict() for d in result.detections],
    }
    (model_dir / "golden.json").write_text(json.dumps(golden, indent=2) + "\n")
    return golden


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="training wall-clock budget")
    p.add_argument("--input-size", type=int, default=320)
    p.add_argument("--export-size", type=int, default=None, help="also export at this size")
    p.add_argument("--out", type=Path, default=Path("edge_assets/models/demo-defects/1"))
    p.add_argument("--name", default="demo-defects")
    p.add_argument("--version", default="1")
    p.add_argument("--train-images", type=int, default=6000)
    p.add_argument("--val-images", type=int, default=200)
    p.add_argument("--test-images", type=int, default=300)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--crop", type=int, default=192, help="training crop size (same pixel scale)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup-steps", type=int, default=60)
    p.add_argument("--width", type=int, default=48, help="channels at stride 8")
    p.add_argument("--eval-every", type=float, default=5.0, help="minutes between val checks")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    p.add_argument(
        "--threads", type=int, default=0, help="CPU threads (0: all); 1 is faster on a busy machine"
    )
    p.add_argument("--cache-dir", default="/tmp/mfgvision-train-cache")
    p.add_argument(
        "--init",
        type=Path,
        help="continue from weights saved by an earlier run (--weights), or from a model.onnx "
        "this tool exported",
    )
    p.add_argument(
        "--weights",
        type=Path,
        default=Path("/tmp/mfgvision-train-cache/weights.pt"),
        help="where to save the final EMA weights (with the training stages, for --init)",
    )
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Train, export, measure on the held-out split with the product's engine, write the folder."""
    args = parse_args(argv)
    model, stats = train(args)
    args.out.mkdir(parents=True, exist_ok=True)
    export_onnx(model, args.out / "model.onnx", args.input_size)
    if args.export_size:
        export_onnx(model, args.out / f"model-{args.export_size}.onnx", args.export_size)
    (args.out / "labels.json").write_text(json.dumps(list(CLASS_NAMES)) + "\n")
    card = model_card(args, stats)
    write_card(args.out, card)
    test_dir = Path(args.cache_dir) / f"test_{args.test_images}_{args.input_size}"
    if not (test_dir / "labels.json").exists():
        size = (args.input_size, args.input_size)
        write_yolo_dataset(test_dir, args.test_images, SPLIT_SEEDS["test"], size)
    report = evaluate(args.out, test_dir)
    card["accuracy"] = {
        "dataset": f"{report['images']} held-out generated images (mfgvision.synthetic test seed "
        f"{SPLIT_SEEDS['test']}, {args.input_size}x{args.input_size})",
        "measured_with": "mfgvision.evaluation (the product's inference engine, ONNX Runtime CPU)",
        "prob_threshold": 0.25,
        "iou_threshold": 0.45,
        "mAP50": report["mAP50"],
        "AP50_per_class": report["per_class"],
        "ms_per_image": report["ms_per_image"],
    }
    write_card(args.out, card)
    write_golden(args.out, args.input_size)
    size_mb = (args.out / "model.onnx").stat().st_size / 1e6
    print(json.dumps({"test": report, "onnx_mb": round(size_mb, 2), **stats}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
