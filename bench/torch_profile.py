"""PyTorch's side of the per-pass breakdown in bench/README.md: where a ResNet train step's
time goes, by torch.profiler, grouped into the passes drpipe's breakdown uses.

    python bench/torch_profile.py --arch resnet18 --size 128 [--batch 16] [--steps 5] [--threads N]

Same work as bench/train.py's `train` row (random weights, one random batch reused, SGD
lr 1e-3 momentum 0.9 weight decay 5e-4), two untimed warm-up steps, then STEPS profiled
steps. Prints one JSON line: milliseconds per step in each group (self CPU time of the aten
ops, so nothing is counted twice), the wall time per step, and the top ops.
"""

import argparse
import json
import time

import torch
import torch.nn.functional as F
import torchvision
from torch.profiler import ProfilerActivity, profile

# Each aten op's self time goes to the first group whose pattern it contains.
GROUPS = [
    ("conv forward", ["mkldnn_convolution", "_convolution", "conv2d", "convolution"]),
    ("conv backward (input + weight grads)", ["convolution_backward"]),
    ("batch norm forward", ["native_batch_norm", "batch_norm"]),
    ("batch norm backward", ["native_batch_norm_backward", "batch_norm_backward"]),
    ("relu forward+backward", ["relu", "threshold_backward", "clamp_min"]),
    ("residual add + grad accumulation", ["aten::add", "add_"]),
    ("pooling, fc, loss", ["pool", "addmm", "mm", "log_softmax", "nll_loss", "mean", "sum"]),
    ("optimiser", ["sgd", "mul_", "add_", "_foreach"]),
    ("allocation, copies, zeroing", ["empty", "zero_", "fill_", "copy_", "to", "reshape",
                                    "view", "t", "as_strided", "resize_"]),
]


def group_of(name):
    # Backward kernels first: "native_batch_norm_backward" also contains "batch_norm".
    if "backward" in name:
        for label, pats in GROUPS:
            if "backward" in label and any(p in name for p in pats):
                return label
        return "other backward"
    for label, pats in GROUPS:
        if any(p in name for p in pats):
            return label
    return "other"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=["resnet18", "resnet50"], required=True)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = getattr(torchvision.models, a.arch)(num_classes=5)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(a.batch, 3, a.size, a.size)
    y = torch.arange(a.batch) % 5

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
        wall = (time.perf_counter() - t0) / a.steps
    groups, ops = {}, []
    for ev in prof.key_averages():
        ms = ev.self_cpu_time_total / 1000.0 / a.steps
        if ms <= 0:
            continue
        g = group_of(ev.key)
        groups[g] = groups.get(g, 0.0) + ms
        ops.append((ms, ev.key))
    ops.sort(reverse=True)
    print(json.dumps({
        "arch": a.arch, "size": a.size, "batch": a.batch, "threads": a.threads,
        "wall_ms_per_step": round(wall * 1000, 1),
        "groups_ms": {k: round(v, 1) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
        "top_ops_ms": [[k, round(ms, 1)] for ms, k in ops[:12]],
    }))


if __name__ == "__main__":
    main()
