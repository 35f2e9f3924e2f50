#!/usr/bin/env python3
"""drpipe's trained weights in PyTorch, as they are: for a ResNet-18 and a ResNet-50 cell that
drpipe has just trained (tiny: generated images, one epoch), load `best.safetensors` into
torchvision's `resnet18(num_classes=5)` / `resnet50(num_classes=5)` with
`load_state_dict(strict=True)` and compare its eval-mode logits with `drpipe predict --logits`
on the same image.

    python bench/torch_weights.py [--drpipe target/release/drpipe] [--work /tmp/drpipe-tw]

Needs torch, torchvision, safetensors, pillow, numpy (and timm, if installed, is checked too). Exits 1 when a load fails or a logit
differs by more than 1e-4 relative (to the largest logit's magnitude).

The image is written at the side drpipe's `predict --size S` decodes to (ceil(S*256/224)), so
that drpipe's decode-and-crop leaves its pixels as they are; the script then applies drpipe's
test transform (the triangle filter of `data/augment.rs::test_transform`, in float64, then
ImageNet normalisation) so that both networks see the same tensor.
"""
import argparse
import math
import pathlib
import subprocess
import sys

import numpy as np
import torch
import torchvision
from PIL import Image
from safetensors.torch import load_file

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
REPO = pathlib.Path(__file__).resolve().parent.parent


def test_transform(src: np.ndarray, n: int) -> np.ndarray:
    """drpipe's test transform: src (s, s, 3) uint8 -> (3, n, n) float32, normalised."""
    s = src.shape[0]
    ratio = s / n
    support = max(ratio, 1.0)

    def weights(out_len):
        w = np.zeros((out_len, s))
        for y in range(out_len):
            c = (y + 0.5) * ratio
            lo, hi = max(int(math.floor(c - support)), 0), min(int(math.ceil(c + support)), s)
            for j in range(lo, hi):
                w[y, j] = max(1.0 - abs((j + 0.5 - c) / support), 0.0)
        return w

    w = weights(n)
    num = np.einsum("yj,xi,jic->yxc", w, w, src.astype(np.float64))
    den = np.einsum("yj,xi->yx", w, w)[..., None]
    v = (num / den).astype(np.float32)
    scale = (1.0 / (255.0 * STD)).astype(np.float32)
    bias = (-MEAN / STD).astype(np.float32)
    out = v * scale + bias
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def train_cells(drpipe: str, work: pathlib.Path) -> pathlib.Path:
    exp = work / "weights.toml"
    exp.write_text(
        f"""pipeline = "{REPO / 'pipelines/retinopathy.toml'}"
[dataset]
source = "synthetic"
images = 40
size = 64
[params]
image_size = 32
batch_size = 8
epochs = 1
freeze_epochs = 0
pretrained = false
[matrix]
model = ["resnet18", "resnet50"]
"""
    )
    subprocess.run([drpipe, "run", str(exp), "-q", "--outputs", str(work / "outputs")], check=True,
                   stdout=subprocess.DEVNULL)
    return work / "outputs/experiments/weights/cells"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--drpipe", default=str(REPO / "target/release/drpipe"))
    ap.add_argument("--work", default="/tmp/drpipe-tw")
    ap.add_argument("--size", type=int, default=64, help="network input side for the check")
    a = ap.parse_args()
    work = pathlib.Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    cells = train_cells(a.drpipe, work)

    side = -(-a.size * 256 // 224)
    rng = np.random.default_rng(0)
    # A photograph-like input: a generated fundus, resized to the decode side.
    photo = next((cells / "resnet18/dataset/data/train").glob("*.jpeg"))
    img = np.asarray(Image.open(photo).convert("RGB").resize((side, side), Image.BILINEAR))
    img = np.clip(img.astype(np.int16) + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8)
    png = work / "eye.png"
    Image.fromarray(img).save(png)
    x = torch.from_numpy(test_transform(img, a.size))[None]

    failed = False
    for arch in ["resnet18", "resnet50"]:
        weights = cells / arch / "train/best.safetensors"
        net = getattr(torchvision.models, arch)(num_classes=5)
        missing = net.load_state_dict(load_file(str(weights)), strict=True)
        net.eval()
        with torch.no_grad():
            ref = net(x)[0].double().numpy()
        out = subprocess.run(
            [a.drpipe, "predict", "--arch", arch, "--weights", str(weights), "--size", str(a.size),
             "--logits", str(png)],
            check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()
        got = np.array([float(v) for v in out[1].split(",")[2:7]])
        rel = np.abs(got - ref).max() / np.abs(ref).max()
        ok = rel <= 1e-4
        failed |= not ok
        print(f"{arch}: torchvision load_state_dict(strict=True): {missing}; {len(net.state_dict())} tensors")
        print(f"  torchvision logits {np.array2string(ref, precision=5)}")
        print(f"  drpipe predict     {np.array2string(got, precision=5)}")
        print(f"  max |diff| / max |logit| = {rel:.2e}  {'ok' if ok else 'FAIL (> 1e-4)'}")
        try:
            import timm
        except ImportError:
            print("  timm: not installed, skipped")
            continue
        t = timm.create_model(arch, pretrained=False, num_classes=5)
        res = t.load_state_dict(load_file(str(weights)), strict=True)
        t.eval()
        with torch.no_grad():
            tref = t(x)[0].double().numpy()
        trel = np.abs(got - tref).max() / np.abs(tref).max()
        failed |= trel > 1e-4
        print(f"  timm {timm.__version__} load_state_dict(strict=True): {res}; "
              f"max |diff| / max |logit| = {trel:.2e}  {'ok' if trel <= 1e-4 else 'FAIL'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
