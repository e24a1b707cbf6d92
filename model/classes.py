"""Class tables: names, raw mask values and colours; decoding and encoding masks.

A class table is the ``classes.json`` of a dataset::

    {"name": "prostate-gleason", "description": "...",
     "classes": [{"name": "stroma", "values": [4], "color": "#e6194b"}, ...]}

Class *indices* are positions in ``classes`` (0..K-1). Raw *values* are the pixel codes
of the dataset's mask files; several values may map to one class.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

MaskEncoding = Literal["auto", "values", "index", "color"]

MAX_LISTED = 8
"""Most unknown values or colours an error message lists (a 16-bit mask can have 65536)."""


class UnknownMaskValuesError(ValueError):
    """A mask holds values or colours outside the class table.

    Args:
        message: the error, listing at most ``MAX_LISTED`` of them.
        unknown: all of them.
    """

    def __init__(self, message: str, unknown: list[Any]) -> None:
        super().__init__(message)
        self.shown = unknown[:MAX_LISTED]
        self.count = len(unknown)


def _listed(items: list[Any]) -> str:
    """``[a, b, c]``, or ``[a, ..., h] and 92 more`` past ``MAX_LISTED`` items."""
    shown = ", ".join(str(i) for i in items[:MAX_LISTED])
    more = len(items) - MAX_LISTED
    return f"[{shown}]" if more <= 0 else f"[{shown}, ...] and {more} more"


@dataclass(frozen=True)
class ClassInfo:
    """One class: display name, the raw mask values that mean it, display colour."""

    name: str
    values: tuple[int, ...]
    color: str


@dataclass(frozen=True)
class ClassTable:
    """The classes of a model or dataset."""

    name: str
    classes: tuple[ClassInfo, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if len(self.classes) < 2:
            raise ValueError(f"class table {self.name!r} needs at least 2 classes")
        seen: dict[int, str] = {}
        for c in self.classes:
            for v in c.values:
                if v in seen:
                    raise ValueError(f"mask value {v} is listed for both {seen[v]!r} and {c.name!r}")
                seen[v] = c.name
        colors = [c.color.lower() for c in self.classes]
        if len(set(colors)) != len(colors):
            raise ValueError(f"class table {self.name!r} repeats a colour")

    # ---- construction -------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassTable:
        try:
            classes = tuple(
                ClassInfo(name=str(c["name"]), values=tuple(int(v) for v in c["values"]), color=_check_color(c["color"]))
                for c in data["classes"]
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed class table: missing or wrong field {exc}") from None
        return cls(name=str(data.get("name", "classes")), classes=classes, description=str(data.get("description", "")))

    @classmethod
    def from_json(cls, path: str | Path) -> ClassTable:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read class table {path}: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def binary(cls, name: str = "binary") -> ClassTable:
        """Background 0 versus foreground 1 or 255."""
        return cls(
            name=name,
            classes=(ClassInfo("background", (0,), "#000000"), ClassInfo("foreground", (1, 255), "#ffffff")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "classes": [{"name": c.name, "values": list(c.values), "color": c.color} for c in self.classes],
        }

    # ---- properties ---------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def palette(self) -> np.ndarray:
        """(K, 3) uint8 colours."""
        return np.array([_hex_to_rgb(c.color) for c in self.classes], dtype=np.uint8)

    def index_of(self, name: str) -> int:
        if name not in self.names:
            raise ValueError(f"unknown class {name!r}; classes are {', '.join(self.names)}")
        return self.names.index(name)

    # ---- decoding -----------------------------------------------------------------
    def decode(self, mask: np.ndarray, encoding: MaskEncoding = "auto") -> np.ndarray:
        """Turn a mask array into class indices (H, W) int64.

        ``auto``: a 2-D array holds raw values of this table, an (H, W, 3|4) array holds
        palette colours. Anything else is a ValueError naming the problem.
        """
        mask = np.asarray(mask)
        if encoding == "auto":
            encoding = "values" if mask.ndim == 2 else "color"
        if encoding == "color":
            return self._decode_color(mask)
        if mask.ndim != 2:
            raise ValueError(f"a {encoding} mask must be 2-D (H, W), got shape {mask.shape}")
        if not np.issubdtype(mask.dtype, np.integer) and not np.issubdtype(mask.dtype, np.bool_):
            raise ValueError(f"mask values must be integers, got dtype {mask.dtype}")
        if encoding == "index":
            return self._decode_index(mask)
        return self._decode_values(mask)

    def _decode_values(self, mask: np.ndarray) -> np.ndarray:
        values, inverse = np.unique(mask.astype(np.int64), return_inverse=True)
        lut = {v: i for i, c in enumerate(self.classes) for v in c.values}
        unknown = [int(v) for v in values if int(v) not in lut]
        if unknown:
            raise UnknownMaskValuesError(
                f"mask has values {_listed(unknown)} that are not in the class table "
                f"{self.name!r} (allowed values: {sorted(lut)})", unknown,
            )
        mapped = np.array([lut[int(v)] for v in values], dtype=np.int64)
        return mapped[inverse].reshape(mask.shape)

    def _decode_index(self, mask: np.ndarray) -> np.ndarray:
        values = np.unique(mask)
        bad = [int(v) for v in values if v < 0 or v >= self.num_classes]
        if bad:
            raise ValueError(f"mask has class indices {bad} outside 0..{self.num_classes - 1}")
        return mask.astype(np.int64)

    def _decode_color(self, mask: np.ndarray) -> np.ndarray:
        if mask.ndim != 3 or mask.shape[2] not in (3, 4):
            raise ValueError(f"a colour mask must be (H, W, 3) RGB, got shape {mask.shape}")
        if mask.shape[2] == 4:
            if not np.all(mask[..., 3] == 255):
                raise ValueError("a colour mask must be opaque: its alpha channel has transparent pixels")
            mask = mask[..., :3]
        rgb = mask.astype(np.int64)
        code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        pal = self.palette.astype(np.int64)
        pal_code = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
        codes, inverse = np.unique(code, return_inverse=True)
        lut = {int(c): i for i, c in enumerate(pal_code)}
        unknown = [f"#{int(c):06x}" for c in codes if int(c) not in lut]
        if unknown:
            raise UnknownMaskValuesError(
                f"mask has colours {_listed(unknown)} that are not in the palette of "
                f"{self.name!r} ({', '.join(f'{c.name}={c.color}' for c in self.classes)})",
                unknown,
            )
        mapped = np.array([lut[int(c)] for c in codes], dtype=np.int64)
        return mapped[inverse].reshape(code.shape)

    # ---- encoding -----------------------------------------------------------------
    def to_color(self, index: np.ndarray) -> np.ndarray:
        """Class indices (H, W) to an RGB (H, W, 3) uint8 image in the palette."""
        return self.palette[np.asarray(index, dtype=np.int64)]

    def to_values(self, index: np.ndarray) -> np.ndarray:
        """Class indices (H, W) to raw values (the first value of each class), uint8."""
        first = np.array([c.values[0] for c in self.classes], dtype=np.int64)
        out = first[np.asarray(index, dtype=np.int64)]
        return out.astype(np.uint8 if out.max(initial=0) < 256 else np.uint16)

    def relabel(self, index: np.ndarray, mapping: dict[str, str]) -> np.ndarray:
        """Replace classes by name, e.g. ``{"low_grade": "high_grade"}`` (Fig. 4c)."""
        out = np.asarray(index, dtype=np.int64).copy()
        src = np.asarray(index, dtype=np.int64)
        for a, b in mapping.items():
            out[src == self.index_of(a)] = self.index_of(b)
        return out


def _hex_to_rgb(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def _check_color(color: Any) -> str:
    c = str(color)
    if len(c) != 7 or not c.startswith("#"):
        raise ValueError(f"class colour {c!r} is not of the form #rrggbb")
    int(c[1:], 16)
    return c.lower()
