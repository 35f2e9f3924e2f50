"""The PyTorch/Pillow reference side of `bench/run data`: one timed row per process, printed
as one JSON line, on the same file list as examples/bench_data.rs (WORK/files.txt).

- audit: Pillow `Image.open(p).load()` of each file (a full decode check, nothing else);
- resize: Pillow open + resize the short side to 256 (BILINEAR) + centre crop 256;
- loader: one epoch of torchvision's DataLoader over the JPEGs with the study's train
  transform, batch 16, shuffled.

At 1 thread everything runs in this process (torch.set_num_threads(1), num_workers=0); at N > 1
threads, audit and resize use a pool of N processes and the loader N DataLoader workers.
"""

import argparse
import json
import multiprocessing
import sys
import time

from PIL import Image

SIZE = 256
CROP = 224
BATCH = 16
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
ROW_NAMES = {"audit": "audit", "resize": "decode+resize", "loader": "epoch loader"}


def check(path):
    with Image.open(path) as im:
        im.load()
    return 1


def resize_square(path):
    with Image.open(path) as im:
        im = im.convert("RGB") if im.mode != "RGB" else im
        w, h = im.size
        # torchvision's Resize(int): the short side becomes SIZE, the long side keeps the ratio.
        if w <= h:
            nw, nh = SIZE, int(SIZE * h / w)
        else:
            nw, nh = int(SIZE * w / h), SIZE
        im = im.resize((nw, nh), Image.BILINEAR)
        left, top = round((nw - SIZE) / 2), round((nh - SIZE) / 2)
        im = im.crop((left, top, left + SIZE, top + SIZE))
        im.load()
    return 1


def per_file(fn, paths, threads):
    if threads == 1:
        return sum(fn(p) for p in paths)
    with multiprocessing.get_context("fork").Pool(threads) as pool:
        return sum(pool.imap_unordered(fn, paths, chunksize=8))


def loader_epoch(paths, threads):
    import torch
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    torch.set_num_threads(threads)
    train_transform = transforms.Compose(
        [
            transforms.Resize(SIZE),
            transforms.CenterCrop(SIZE),
            transforms.RandomCrop(CROP),
            transforms.RandomRotation(20),
            transforms.RandomHorizontalFlip(),
            transforms.RandomVerticalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )

    class Folder(Dataset):
        """An ImageFolder-like data set: a list of JPEG paths, decoded on every access."""

        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            with Image.open(paths[i]) as im:
                return train_transform(im.convert("RGB")), 0

    torch.manual_seed(1)
    workers = 0 if threads == 1 else threads
    dl = DataLoader(Folder(), batch_size=BATCH, shuffle=True, num_workers=workers)
    seen = 0
    for images, _labels in dl:
        seen += images.shape[0]
    return seen


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("row", choices=sorted(ROW_NAMES))
    ap.add_argument("--work", required=True)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    with open(f"{a.work}/files.txt") as f:
        paths = [line.rstrip("\n") for line in f if line.strip()]
    if a.row == "loader":
        # Imported before the clock starts, as the study's script does once.
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    start = time.perf_counter()
    if a.row == "audit":
        n = per_file(check, paths, a.threads)
    elif a.row == "resize":
        n = per_file(resize_square, paths, a.threads)
    else:
        n = loader_epoch(paths, a.threads)
    secs = time.perf_counter() - start
    if n != len(paths):
        sys.exit(f"{a.row}: handled {n} of {len(paths)} images")
    row = {
        "row": ROW_NAMES[a.row],
        "images_per_s": n / secs,
        "images": n,
        "seconds": secs,
        "threads": a.threads,
    }
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
