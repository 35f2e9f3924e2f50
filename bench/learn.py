"""An independent check that a DR data set in the Kaggle layout can be learned: a plain
PyTorch/torchvision loop, written the way a researcher would, sharing no code with drpipe.

    python bench/learn.py DIR [--size 64] [--epochs 6] [--weights none|inverse_frequency] [--graham]

DIR holds `trainLabels.csv` (image,level) and `train/<image>.jpeg` (what `drpipe synth`
writes). Patients (`<id>_left`/`<id>_right`) are split into train/val/test (0.60/0.15/0.25),
stratified by their worse eye's grade, with this script's own seeded shuffle. Training:
ResNet-18 from scratch, resize to SIZE*8/7 then random crop SIZE, rotation +-20 degrees, both
flips, ImageNet normalisation (with --graham, Ben Graham's filter first, after the resize:
4 x image - 4 x its Gaussian blur of sigma SIZE*8/7/60 + 128, grey outside 0.9 of the radius); SGD (momentum 0.9, weight decay 5e-4), cosine schedule,
cross-entropy (optionally class-weighted by inverse frequency). The checkpoint is the epoch of
best validation QWK; the test split is read once, at the end. Prints one JSON line per epoch
and one final line with test accuracy, QWK, referable-DR AUC (grade >= 2, scored by the
probability mass on grades 2-4) and mean recall over grades 1-4. Files PIL cannot decode are
skipped and counted (truncated JPEGs are loaded as far as they go).
"""

import argparse
import copy
import csv
import json
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image, ImageFile, ImageFilter
from torchvision import transforms as T

ImageFile.LOAD_TRUNCATED_IMAGES = True
GRADES = 5
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def read_labels(root):
    with open(os.path.join(root, "trainLabels.csv")) as f:
        return [(r["image"], int(r["level"])) for r in csv.DictReader(f)]


def graham(im):
    """Ben Graham's local-contrast filter (Kaggle DR 2015), with PIL's Gaussian blur."""
    side = im.size[0]
    a = np.asarray(im, dtype=np.float32)
    blur = np.asarray(im.filter(ImageFilter.GaussianBlur(max(side / 60, 0.5))), dtype=np.float32)
    out = np.clip(4 * a - 4 * blur + 128, 0, 255)
    yy, xx = np.mgrid[0:side, 0:side] + 0.5 - side / 2
    out[xx * xx + yy * yy > (0.45 * side) ** 2] = 128
    return Image.fromarray(out.round().astype(np.uint8))


def load(root, rows, side, filt=None):
    images, labels, skipped = [], [], 0
    for name, level in rows:
        try:
            with Image.open(os.path.join(root, "train", name + ".jpeg")) as im:
                im = im.convert("RGB").resize((side, side), Image.BILINEAR)
                images.append(filt(im) if filt else im)
                labels.append(level)
        except Exception:
            skipped += 1
    return images, labels, skipped


def split_patients(rows, seed):
    worst = {}
    for name, level in rows:
        pid = name.rsplit("_", 1)[0]
        worst[pid] = max(worst.get(pid, 0), level)
    rng = random.Random(seed)
    parts = {"train": set(), "val": set(), "test": set()}
    for g in range(GRADES):
        pids = sorted(p for p, w in worst.items() if w == g)
        rng.shuffle(pids)
        n_test = round(len(pids) * 0.25)
        n_val = round(len(pids) * 0.15)
        parts["test"].update(pids[:n_test])
        parts["val"].update(pids[n_test:n_test + n_val])
        parts["train"].update(pids[n_test + n_val:])
    return {k: [r for r in rows if r[0].rsplit("_", 1)[0] in v] for k, v in parts.items()}


def qwk(y, p):
    o = np.zeros((GRADES, GRADES))
    for a, b in zip(y, p):
        o[a, b] += 1
    w = np.array([[(i - j) ** 2 for j in range(GRADES)] for i in range(GRADES)]) / (GRADES - 1) ** 2
    e = np.outer(o.sum(1), o.sum(0)) / max(o.sum(), 1)
    den = (w * e).sum()
    return 0.0 if den == 0 else 1.0 - (w * o).sum() / den


def auc(y, s):
    pos = [v for v, t in zip(s, y) if t]
    neg = [v for v, t in zip(s, y) if not t]
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def metrics(y, probs):
    pred = probs.argmax(1)
    recalls = [np.mean(pred[y == g] == g) for g in range(1, GRADES) if (y == g).any()]
    return {
        "acc": float(np.mean(pred == y)),
        "qwk": float(qwk(y, pred)),
        "referable_auc": float(auc(y >= 2, probs[:, 2:].sum(1))),
        "recall_1_4": float(np.mean(recalls)) if recalls else float("nan"),
    }


def predict(model, images, tf):
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(images), 64):
            x = torch.stack([tf(im) for im in images[i:i + 64]])
            out.append(F.softmax(model(x), 1))
    return torch.cat(out).numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--weights", choices=["none", "inverse_frequency"], default="none")
    ap.add_argument("--optim", choices=["sgd", "adam"], default="sgd")
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--graham", action="store_true", help="Ben Graham's filter after the resize")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    start = time.perf_counter()
    parts = split_patients(read_labels(a.root), a.seed)
    side = a.size * 8 // 7
    data = {k: load(a.root, v, side, graham if a.graham else None) for k, v in parts.items()}
    train_tf = T.Compose([
        T.RandomCrop(a.size), T.RandomRotation(20), T.RandomHorizontalFlip(),
        T.RandomVerticalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])
    test_tf = T.Compose([T.CenterCrop(a.size), T.ToTensor(), T.Normalize(MEAN, STD)])
    if a.no_augment:
        train_tf = test_tf

    train_x, train_y, _ = data["train"]
    counts = np.bincount(train_y, minlength=GRADES).astype(float)
    weight = None
    if a.weights == "inverse_frequency":
        weight = torch.tensor(counts.sum() / (GRADES * np.maximum(counts, 1)), dtype=torch.float32)
    model = torchvision.models.resnet18(num_classes=GRADES)
    if a.optim == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9, weight_decay=5e-4)
    steps = a.epochs * ((len(train_x) + a.batch - 1) // a.batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    best, best_state = -2.0, None
    val_y = np.array(data["val"][1])
    for epoch in range(1, a.epochs + 1):
        model.train()
        order = torch.randperm(len(train_x)).tolist()
        total = 0.0
        for i in range(0, len(order), a.batch):
            idx = order[i:i + a.batch]
            x = torch.stack([train_tf(train_x[j]) for j in idx])
            y = torch.tensor([train_y[j] for j in idx])
            loss = F.cross_entropy(model(x), y, weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        val = metrics(val_y, predict(model, data["val"][0], test_tf))
        print(json.dumps({"epoch": epoch, "train_loss": total / len(order),
                          **{"val_" + k: v for k, v in val.items()}}), flush=True)
        if val["qwk"] > best:
            best, best_state = val["qwk"], copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    test_y = np.array(data["test"][1])
    result = metrics(test_y, predict(model, data["test"][0], test_tf))
    result.update({
        "weights": a.weights, "seconds": round(time.perf_counter() - start, 1),
        "images": {k: len(v[1]) for k, v in data.items()},
        "skipped": sum(v[2] for v in data.values()), "best_val_qwk": best})
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
