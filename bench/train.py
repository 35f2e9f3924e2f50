"""The PyTorch reference side of `bench/run train`: one timed row per process, printed as one
JSON line, mirroring examples/bench_train.rs.

torchvision ResNet-18/50 with a 5-way fc and random weights, one random fp32 batch reused every
step. `train`: model.train(), forward, cross-entropy, backward, SGD (lr 1e-3, momentum 0.9,
weight decay 5e-4). `eval`: model.eval() forward under torch.no_grad(). One warm-up step is
untimed; the peak resident memory (VmHWM) is read at the end.
"""

import argparse
import json
import time

import torch
import torch.nn.functional as F
import torchvision

NUM_CLASSES = 5


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmHWM line in /proc/self/status")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=["resnet18", "resnet50"], required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--mode", choices=["train", "eval"], required=True)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, required=True)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = getattr(torchvision.models, a.arch)(num_classes=NUM_CLASSES)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(a.batch, 3, a.size, a.size)
    y = torch.arange(a.batch) % NUM_CLASSES

    # Seconds in forward (incl. loss and zero_grad), backward and the optimiser step, over
    # the timed steps, as examples/bench_train.rs reports them.
    phases = [0.0, 0.0, 0.0]

    if a.mode == "train":
        model.train()

        def step(phases):
            t0 = time.perf_counter()
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            opt.step()
            phases[0] += t1 - t0
            phases[1] += t2 - t1
            phases[2] += time.perf_counter() - t2

    else:
        model.eval()

        def step(phases):
            t0 = time.perf_counter()
            with torch.no_grad():
                model(x)
            phases[0] += time.perf_counter() - t0

    step([0.0, 0.0, 0.0])
    start = time.perf_counter()
    for _ in range(a.steps):
        step(phases)
    secs = time.perf_counter() - start
    row = {
        "row": f"{a.arch} {a.mode} {a.size}px",
        "images_per_s": a.steps * a.batch / secs,
        "seconds": secs,
        "steps": a.steps,
        "threads": torch.get_num_threads(),
        "peak_rss_mb": peak_rss_mb(),
        "forward_s": phases[0],
        "backward_s": phases[1],
        "optimizer_s": phases[2],
    }
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
