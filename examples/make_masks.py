"""Draw the example masks of the README (hand-made shapes, no patient data).

Raw values follow ../shared/data/gleason/classes.json, so the masks suit both bundled
models: 4 stroma, 3 benign gland, 0 low grade (Gleason 3), 1 high grade (Gleason 4).

    python examples/make_masks.py   # writes examples/mask.png, mask-color.png, mask-small.png
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

HERE = Path(__file__).resolve().parent
STROMA, BENIGN, LOW, HIGH = 4, 3, 0, 1
COLORS = {STROMA: (230, 25, 75), BENIGN: (60, 180, 75), LOW: (67, 99, 216), HIGH: (255, 225, 25)}


def draw(size: int = 1024, seed: int = 3) -> np.ndarray:
    """Fused high-grade blobs from smoothed noise, round low-grade and benign glands."""
    rng = np.random.default_rng(seed)
    mask = np.full((size, size), STROMA, np.uint8)
    field = ndimage.gaussian_filter(rng.normal(size=(size, size)), sigma=size / 22)
    mask[field > np.quantile(field, 0.68)] = HIGH
    yy, xx = np.mgrid[0:size, 0:size]
    for value, count, radius in ((LOW, 34, (18, 38)), (BENIGN, 5, (35, 55))):
        for _ in range(count):
            cy, cx = rng.integers(0, size, 2)
            ry, rx = rng.integers(*radius, 2)
            angle = rng.uniform(0, np.pi)
            dy, dx = yy - cy, xx - cx
            u = dx * np.cos(angle) + dy * np.sin(angle)
            v = -dx * np.sin(angle) + dy * np.cos(angle)
            inside = (u / rx) ** 2 + (v / ry) ** 2 < 1
            mask[inside & (mask == STROMA)] = value
    return mask


def colour(mask: np.ndarray) -> np.ndarray:
    out = np.zeros((*mask.shape, 3), np.uint8)
    for value, rgb in COLORS.items():
        out[mask == value] = rgb
    return out


def main() -> None:
    mask = draw()
    Image.fromarray(mask, mode="L").save(HERE / "mask.png")
    Image.fromarray(colour(mask)).save(HERE / "mask-color.png")
    Image.fromarray(mask[:256, :256], mode="L").save(HERE / "mask-small.png")
    print("wrote", *(HERE / n for n in ("mask.png", "mask-color.png", "mask-small.png")))


if __name__ == "__main__":
    main()
