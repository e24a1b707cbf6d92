"""Shard planning: shards cover the job's pairs exactly once, in order, with their own masks."""

from __future__ import annotations

import pytest

from worker.augment import TRANSFORMS, plan_pairs
from worker.fanout import plan_shards, shard_pairs, shard_unit
from worker.schemas import AugmentJobRequest

MASKS = [f"masks/m{i}.png" for i in range(7)]


@pytest.mark.parametrize(
    ("transforms", "variants", "per_shard", "fmt", "tar", "unit", "shards"),
    [
        ("none", 1, 3, "files", 1, 3, 3),          # 7 pairs: 3 + 3 + 1
        ("flips", 2, 4, "files", 1, 4, 11),        # 42 pairs, a mask's 6 pairs split over shards
        ("all", 3, 1000, "files", 1, 1000, 1),     # one shard: the parent does it all
        ("none", 5, 7, "webdataset", 4, 8, 5),     # rounded up to whole tars of 4
    ],
)
def test_shards_cover_every_pair_once(
    transforms: str, variants: int, per_shard: int, fmt: str, tar: int, unit: int, shards: int
) -> None:
    req = AugmentJobRequest(source="s", output="o", variants_per_mask=variants, transforms=transforms,
                            pairs_per_shard=per_shard, output_format=fmt, samples_per_tar=tar)  # type: ignore[arg-type]
    assert shard_unit(req) == unit
    specs = plan_shards(MASKS, req, seed=3, parent="p")
    assert len(specs) == shards and [s.shard for s in specs] == list(range(shards))
    whole = plan_pairs(MASKS, TRANSFORMS[transforms], variants, 3)
    assert [p for s in specs for p in shard_pairs(s)] == whole
    for spec in specs:
        assert {p.mask_key for p in shard_pairs(spec)} == set(spec.masks)
        assert spec.stop - spec.start <= unit
