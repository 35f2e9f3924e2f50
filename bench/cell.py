"""One side of `bench/run cell`: a whole quickstart training cell, timed from outside.

    python bench/cell.py drpipe|reference --data DIR --drpipe BIN [--epochs 9] [--threads N]

Both sides train ResNet-18 from scratch on the same generated images (DIR, Kaggle layout) with
the quickstart's recipe: Ben Graham's filter, 64 px, batch 16, Adam lr 3e-4, cosine schedule,
the study's augmentation, validation after every epoch, the best-validation-QWK epoch tested once.
`drpipe`: `drpipe run experiments/quickstart.toml` restricted to the unweighted cell, on DIR
(audit and repair, split, decode-once cache, train, evaluate, report), in a fresh outputs
folder. `reference`: bench/learn.py, the plain torchvision loop (decode once, augment per
epoch, no worker processes). Prints one JSON line: wall seconds, training images per second
(train images x epochs / wall), the child's peak RSS, and the test metrics each side printed.
"""

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

# The repository root: the experiment file and bench/learn.py are found from here, wherever
# the script is started.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("side", choices=["drpipe", "reference"])
    ap.add_argument("--data", required=True)
    ap.add_argument("--drpipe", default=os.path.join(ROOT, "target", "release", "drpipe"))
    ap.add_argument("--epochs", type=int, default=9)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="drpipe-bench-cell-") as outputs:
        if a.side == "drpipe":
            cmd = [a.drpipe, "run", os.path.join(ROOT, "experiments", "quickstart.toml"),
                   "--outputs", outputs,
                   "--set", "dataset.source=kaggle", "--set", f"dataset.root={a.data}",
                   "--set", f"epochs={a.epochs}",
                   "--set", 'matrix.class_weights=["none"]']
            env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
        else:
            cmd = [sys.executable, os.path.join(ROOT, "bench", "learn.py"), a.data, "--size", "64", "--epochs",
                   str(a.epochs), "--optim", "adam", "--lr", "0.0003", "--batch", "16", "--graham",
                   "--threads", str(a.threads)]
            env = dict(os.environ)
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            sys.stderr.write(done.stdout + done.stderr)
            sys.exit(f"bench/cell.py: {a.side} failed with exit status {done.returncode}")
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
        if a.side == "drpipe":
            text = done.stdout + done.stderr
            m = re.search(r"(\d+) train / \d+ val / \d+ test images", text)
            if not m:
                sys.exit("bench/cell.py: no class statistics line in drpipe's output:\n" + text)
            train = int(m.group(1))
            # The results table's one row: the cell's name, then its accuracy.
            row = re.search(r"^\S+\s+\d+\.\d.*$", done.stdout, re.M)
            test = {"table_row": row.group(0).strip() if row else None}
        else:
            last = json.loads(done.stdout.strip().splitlines()[-1])
            train = last["images"]["train"]
            test = {k: last[k] for k in ("acc", "qwk", "referable_auc")}
    print(json.dumps({
        "row": "quickstart cell", "threads": a.threads, "wall_s": round(wall, 1),
        "images_per_s": round(train * a.epochs / wall, 2),
        "train_images": train, "peak_rss_mb": round(peak_mb, 1), "test": test}))


if __name__ == "__main__":
    main()
