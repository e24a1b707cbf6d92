"""``histosynth experiment <generation|supervised|ssl>``: the paper's comparisons end to end.

- ``generation`` (Table 1): pix2pix, pix2pixHD and ours (Algorithm 1) on held-out masks: SWD,
  FID/KID (Inception with ``--inception``, else the in-project random-conv extractor), mask
  consistency judged by one independent segmenter (a segmenter pyramid trained on the real
  training pairs, the same judge for every method) and MS-SSIM diversity.
- ``supervised`` (Tables 2, 3): m-FC-DenseNet, m-FC-DenseNet + pyramid and ours (Algorithm 2)
  on the held-out images: per-class Jaccard, mIoU, OPA, SMA (+ GlaS object metrics if binary).
- ``ssl`` (Tables 4-8): labelled fractions x seeds for m-FC-DenseNet, the pyramid, mean teacher
  (inductive, transductive) and ours (Algorithm 3, inductive, transductive): mean and spread.

Every run lives in ``OUT/runs/<experiment>/...``; a finished run (``model.pt``) is reused, and an
interrupted run of ours resumes, so a killed experiment continues where it stopped. Results:
``OUT/<experiment>.md`` (tables) and ``OUT/<experiment>.json`` (everything).
"""

from model.experiments.runs import run_experiment, segmentation_report, train_method
from model.experiments.setup import (
    EXPERIMENTS,
    METHODS,
    Method,
    Setup,
    crop_tiles,
    default_holdout,
    downscale,
    subset,
)

__all__ = [
    "EXPERIMENTS",
    "METHODS",
    "Method",
    "Setup",
    "crop_tiles",
    "default_holdout",
    "downscale",
    "run_experiment",
    "segmentation_report",
    "subset",
    "train_method",
]
