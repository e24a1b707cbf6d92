"""Output layouts of augmentation jobs: what a complete pair is and how the manifest is built.

``files`` (the default) writes ``images/<stem>.png``, ``masks/<stem>.png`` and last
``records/<index>.json``, the pair's commit marker. ``webdataset`` writes tar shards
``shards/shard-<n>.tar`` of ``samples_per_tar`` consecutive pairs, each sample as
``<key>.image.png``, ``<key>.mask.png`` and ``<key>.json`` (the WebDataset convention:
files of one sample share the name up to the first dot), then ``records/shard-<n>.jsonl``,
the tar's commit marker. A tar is built in a local temporary file and stored in one
atomic write, so a killed worker leaves either the whole tar or none of it.
"""

from __future__ import annotations

import io
import itertools
import json
import tarfile
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from model.augmentation import record_key
from worker.schemas import AugmentJobRequest
from worker.storage import Storage

Report = Callable[[dict[str, Any]], None]
ShouldStop = Callable[[], bool]
MANIFEST = "manifest.jsonl"


class Planned(Protocol):
    """A planned pair (``model.augmentation.Pair``) as far as a layout cares."""

    @property
    def index(self) -> int: ...

    @property
    def stem(self) -> str: ...

    @property
    def keys(self) -> tuple[str, str, str]:
        """(image key, mask key, record key) in the ``files`` layout."""


@dataclass(frozen=True)
class Sample:
    """A generated pair: PNG bytes of image and mask and its manifest fields."""

    stem: str
    image: bytes
    mask: bytes
    record: dict[str, Any]


Make = Callable[[Any], Sample]


class Counter:
    """Counts written and skipped pairs, reports progress with an ETA, polls for cancel.

    Args:
        total: pairs to get through.
        report: receives ``{done, total, written, skipped, eta_s}`` after every pair.
        should_stop: polled before every pair.
    """

    def __init__(self, total: int, report: Report, should_stop: ShouldStop) -> None:
        self.total, self.report, self.should_stop = total, report, should_stop
        self.written = self.skipped = 0
        self.start = time.monotonic()

    @property
    def done(self) -> int:
        return self.written + self.skipped

    def add(self, written: int = 0, skipped: int = 0) -> None:
        self.written += written
        self.skipped += skipped
        rate = self.written / (time.monotonic() - self.start) if self.written else 0.0
        eta = round((self.total - self.done) / rate, 1) if rate > 0 else None
        self.report({"done": self.done, "total": self.total, "written": self.written,
                     "skipped": self.skipped, "eta_s": eta})

    def stop(self) -> bool:
        return self.should_stop()


def record_line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True).encode()


class Layout(ABC):
    """Where the pairs of a job go; subclasses decide the keys and the commit markers."""

    def __init__(self, out: Storage) -> None:
        self.out = out

    @abstractmethod
    def write(self, pairs: Sequence[Planned], make: Make, counter: Counter) -> bool:
        """Write the pairs that are not complete yet; False when stopped by a cancel."""

    @abstractmethod
    def records(self, total: int) -> list[bytes]:
        """The manifest lines of pairs ``0..total-1`` in index order (all must be complete)."""

    def write_manifest(self, total: int) -> None:
        self.out.write_bytes(MANIFEST, b"".join(line + b"\n" for line in self.records(total)))


class FilesLayout(Layout):
    """One PNG per image and mask, one JSON record per pair (the record is written last)."""

    def write(self, pairs: Sequence[Planned], make: Make, counter: Counter) -> bool:
        for pair in pairs:
            if counter.stop():
                return False
            keys = pair.keys
            if all(self.out.exists(k) for k in reversed(keys)):
                counter.add(skipped=1)
                continue
            sample = make(pair)
            image_key, mask_key, record_key = keys
            self.out.write_bytes(image_key, sample.image)
            self.out.write_bytes(mask_key, sample.mask)
            self.out.write_bytes(record_key, record_line({**sample.record, "image": image_key, "mask": mask_key}))
            counter.add(written=1)
        return True

    def records(self, total: int) -> list[bytes]:
        return [record_line(json.loads(self.out.read_bytes(record_key(i)))) for i in range(total)]


def sample_key(stem: str) -> str:
    """A WebDataset sample key: no dots (the first dot starts the extension)."""
    return stem.replace(".", "_")


class WebDatasetLayout(Layout):
    """Tar shards of ``samples_per_tar`` consecutive pairs; pair ``i`` is in tar ``i // samples_per_tar``."""

    def __init__(self, out: Storage, samples_per_tar: int) -> None:
        super().__init__(out)
        self.samples_per_tar = samples_per_tar

    @staticmethod
    def tar_key(tar: int) -> str:
        return f"shards/shard-{tar:06d}.tar"

    @staticmethod
    def marker_key(tar: int) -> str:
        return f"records/shard-{tar:06d}.jsonl"

    def write(self, pairs: Sequence[Planned], make: Make, counter: Counter) -> bool:
        for tar, group in itertools.groupby(pairs, key=lambda p: p.index // self.samples_per_tar):
            members = list(group)
            if self.out.exists(self.marker_key(tar)) and self.out.exists(self.tar_key(tar)):
                counter.add(skipped=len(members))
            elif not self.write_tar(tar, members, make, counter):
                return False
        return True

    def write_tar(self, tar: int, pairs: list[Planned], make: Make, counter: Counter) -> bool:
        """Generate the tar's samples into a temporary file, store it, then its records."""
        lines = []
        with tempfile.TemporaryFile(prefix="histosynth-", suffix=".tar") as f:
            with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as archive:
                for pair in pairs:
                    if counter.stop():
                        return False
                    lines.append(self.add_sample(archive, tar, make(pair)))
                    counter.add(written=1)
            f.seek(0)
            self.out.write_stream(self.tar_key(tar), f)
        self.out.write_bytes(self.marker_key(tar), b"".join(line + b"\n" for line in lines))
        return True

    def add_sample(self, archive: tarfile.TarFile, tar: int, sample: Sample) -> bytes:
        key = sample_key(sample.stem)
        record = {**sample.record, "key": key, "shard": self.tar_key(tar),
                  "image": f"{key}.image.png", "mask": f"{key}.mask.png"}
        line = record_line(record)
        for name, data in ((record["image"], sample.image), (record["mask"], sample.mask), (f"{key}.json", line)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0  # same bytes on every rerun
            archive.addfile(info, io.BytesIO(data))
        return line

    def records(self, total: int) -> list[bytes]:
        tars = -(-total // self.samples_per_tar)
        return [line for t in range(tars) for line in self.out.read_bytes(self.marker_key(t)).splitlines()]


def open_layout(req: AugmentJobRequest, out: Storage) -> Layout:
    """The layout the request asks for, writing to ``out``."""
    if req.output_format == "webdataset":
        return WebDatasetLayout(out, req.samples_per_tar)
    return FilesLayout(out)
