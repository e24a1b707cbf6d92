"""Time ``Pipeline.segment`` on a random RGB image with whatever ``model`` package is on the
path, so that an old commit (which may predate ``histosynth bench segment``) and today's
code can be timed the same way on the same machine.

    git worktree add /tmp/old 7280dd1
    PYTHONPATH=/tmp/old python docs/benchmarks/time_segment.py /tmp/old/models/prostate-gleason.pt
    python docs/benchmarks/time_segment.py models/prostate-gleason.pt

Prints where the code came from, the segmenter's configuration (compare it between the two), seconds per image for
each repeat, and the peak resident memory above the loaded model.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

import model.pipeline as pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="serving file (.pt)")
    parser.add_argument("--size", type=int, default=1024, help="image side in pixels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = getattr(pipeline, "load_pipeline", None) or pipeline.Pipeline.load  # older commits
    pipe = load(args.model, device="cpu")
    print("code", pipeline.__file__)
    print("segmenter", pipe.config.segmenter)
    image = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        pipe.segment(image)
        seconds.append(time.perf_counter() - start)
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    print(f"size {args.size}, {args.threads} threads: s/image {' '.join(f'{s:.2f}' for s in seconds)}; "
          f"peak {peak:.0f} MiB above the loaded model")


if __name__ == "__main__":
    main()
