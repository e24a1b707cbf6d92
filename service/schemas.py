"""Typed request and response models of the REST API (they make the OpenAPI spec).

Job payloads and job status (``TrainJobRequest``, ``AugmentJobRequest``, ``JobInfo``)
live in :mod:`worker.schemas`, shared with the workers; the routes use them directly.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from model.pipeline import MAX_SEED as PIPELINE_MAX_SEED

OutputFormat = Literal["png", "zip", "json"]
"""``png``: one image; ``zip``: PNGs + manifest.json; ``json``: base64 PNGs with seeds."""

SegmentFormat = Literal["index", "values", "color"]
"""``index``: 8-bit class indices; ``values``: raw dataset values; ``color``: RGB palette."""

MAX_SEED = PIPELINE_MAX_SEED - 1
"""Largest accepted seed (variant i uses seed + i, which must stay <= this)."""

MAX_NOISE = 10.0
"""Largest accepted noise scale; beyond a few the images are noise, not tissue."""


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable error code.", examples=["unknown_model"])
    message: str = Field(
        description="What went wrong and how to fix it.",
        examples=["unknown model 'prostate'; known models: prostate-gleason"],
    )
    details: Any = Field(
        default=None, description="Structured context: known models, allowed values, fields."
    )


class ErrorResponse(BaseModel):
    """The one error shape of every non-2xx response."""

    error: ErrorBody


class GenerationInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: str = Field(
        description="Model that generated the images.", examples=["prostate-gleason"]
    )
    model_sha256: str = Field(description="sha256 of the model's serving file.")
    seed: int = Field(description="Base seed; variant i used seed + i.", examples=[1234])
    noise: float = Field(description="Noise scale used.", examples=[1.0])
    width: int = Field(description="Image width in pixels (equals the mask's).", examples=[1024])
    height: int = Field(description="Image height in pixels (equals the mask's).", examples=[1024])


class GeneratedImage(BaseModel):
    seed: int = Field(description="Seed that reproduces this variant with n=1.", examples=[1234])
    png_base64: str = Field(description="The image as a base64-encoded PNG.")


class GenerateResponse(GenerationInfo):
    """``format=json``: every variant as a base64 PNG with its seed."""

    images: list[GeneratedImage]


class ManifestEntry(BaseModel):
    file: str = Field(description="PNG file name inside the ZIP.", examples=["variant_000.png"])
    seed: int = Field(description="Seed that reproduces this variant with n=1.")


class GenerationManifest(GenerationInfo):
    """``manifest.json`` inside the ZIP of ``format=zip``."""

    variants: list[ManifestEntry]


class ClassOut(BaseModel):
    index: int = Field(description="Class index (value in an index mask).", examples=[0])
    name: str = Field(examples=["stroma"])
    values: list[int] = Field(description="Raw mask values meaning this class.", examples=[[4]])
    color: str = Field(description="Palette colour #rrggbb (colour masks).", examples=["#e6194b"])


class ScaleOut(BaseModel):
    n: int = Field(description="Scale index: 0 finest, num_scales-1 coarsest.")
    downsample: int = Field(description="Image size divided by this at this scale (2**n).")


class ModelSummary(BaseModel):
    name: str = Field(examples=["prostate-gleason"])
    default: bool = Field(description="Used when a request names no model.")
    loaded: bool = Field(description="Loaded and ready to serve.")
    sha256: str | None = Field(default=None, description="sha256 of the serving file.")
    size_bytes: int | None = Field(default=None, description="Size of the serving file.")
    num_classes: int | None = None
    num_scales: int | None = None
    error: str | None = Field(default=None, description="Why the model failed to load, if it did.")


class ModelList(BaseModel):
    default_model: str = Field(examples=["prostate-gleason"])
    models: list[ModelSummary]


class ModelDetail(ModelSummary):
    description: str = Field(default="", description="Class table description.")
    classes: list[ClassOut] = Field(default_factory=list)
    scales: list[ScaleOut] = Field(default_factory=list)
    factor: int | None = Field(
        default=None,
        description="Masks are padded internally to multiples of this (2**(num_scales-1)).",
    )
    training: dict[str, Any] = Field(
        default_factory=dict, description="Training summary: dataset, preset, steps, losses."
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="All stored metadata.")


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    version: str = Field(examples=["0.1.0"])


class Check(BaseModel):
    ok: bool
    detail: str = Field(examples=["1 model loaded (prostate-gleason)"])


class ReadyResponse(BaseModel):
    """Readiness: 200 when every check passes, 503 (same body) otherwise."""

    ready: bool
    checks: dict[str, Check] = Field(
        description="model: the default model is loaded; redis: the job queue answers; "
        "storage: the model store and data root are reachable."
    )
