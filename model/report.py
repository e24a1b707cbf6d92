"""Run-directory artefacts: metrics log, loss plot, sample grids."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

#: A table column: header, alignment (``"l"`` or ``"r"``) and the cell text of a row.
Column = tuple[str, str, Callable[[dict[str, Any]], str]]


def markdown_table(columns: Sequence[Column], rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table (also readable in a terminal) of ``rows``, one line per row."""
    lines = [
        "| " + " | ".join(header for header, _, _ in columns) + " |",
        "|" + "|".join("---:" if align == "r" else "---" for _, align, _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(cell(r) for _, _, cell in columns) + " |" for r in rows]
    return "\n".join(lines)


class MetricsLog:
    """Append-only ``metrics.jsonl``; on resume, lines past the checkpoint are dropped."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def truncate_after(self, global_step: int) -> None:
        """Keep only records up to ``global_step`` (a killed run may have logged past its state)."""
        if not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines() if line.strip()
                and json.loads(line).get("global_step", 0) <= global_step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def clear(self) -> None:
        """Start an empty log (a new run in a folder that an unfinished one left records in)."""
        self.path.unlink(missing_ok=True)

    def append(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def plot_losses(records: list[dict[str, Any]], path: Path) -> Path | None:
    """One panel per loss term against the global step, scale boundaries marked."""
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in records:
        for k, v in r.items():
            if k.startswith("loss/") and v is not None:
                series[k[5:]].append((r["global_step"], v))
    if not series:
        return None
    names = sorted(series)
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3 * rows), squeeze=False)
    bounds = [r["global_step"] for i, r in enumerate(records[1:], 1) if r["scale"] != records[i - 1]["scale"]]
    for ax, name in zip(axes.flat, names, strict=False):
        steps, values = zip(*series[name], strict=True)
        ax.plot(steps, values, lw=0.8)
        for b in bounds:
            ax.axvline(b, color="grey", lw=0.5, ls="--")
        ax.set_title(name)
        ax.set_xlabel("step")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def image_grid(rows: list[list[np.ndarray]], pad: int = 4) -> np.ndarray:
    """Tile equally sized (H, W, 3) uint8 images into one picture, white gutters."""
    h, w = rows[0][0].shape[:2]
    ncols = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + pad) + pad, ncols * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y:y + h, x:x + w] = img
    return out


def save_png(array: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path
