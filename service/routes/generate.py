"""POST /generate: mask in, synthetic H&E image(s) out."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

import anyio
import numpy as np
from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import JSONResponse, Response

from model.classes import MaskEncoding, UnknownMaskValuesError
from model.pipeline import Pipeline
from service.deps import LimiterDep, RegistryDep, SettingsDep, require_api_key, resolve_model
from service.errors import ApiError, error_responses, validation_error
from service.media import (
    build_images,
    build_zip,
    check_min_side,
    decode_mask_file,
    encode_png,
    read_upload,
)
from service.schemas import MAX_NOISE, MAX_SEED, GenerateResponse, GenerationInfo, OutputFormat

router = APIRouter(tags=["generate"], dependencies=[Depends(require_api_key)])


@dataclass(frozen=True)
class GenerateParams:
    """Validated form fields of one /generate request."""

    n: int
    seed: int | None
    noise: float
    encoding: MaskEncoding
    min_side: int
    max_pixels: int


@dataclass(frozen=True)
class GenerateResult:
    info: GenerationInfo
    pngs: list[bytes]
    seeds: list[int]


_RESPONSES = {
    200: {
        "description": "One PNG (`format=png`), a ZIP of PNGs plus manifest.json "
        "(`format=zip`) or base64 PNGs with seeds (`format=json`). Headers "
        "`X-HistoSynth-Model`, `X-HistoSynth-Model-SHA256`, `X-HistoSynth-Seed` (base seed) "
        "and `X-HistoSynth-Seeds` (one per variant) describe the result.",
        "model": GenerateResponse,
        "content": {
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "application/zip": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    **error_responses(400, 401, 404, 413, 422, 503),
}


@router.post("/generate", response_model=None, responses=_RESPONSES, summary="Generate images")
async def generate(
    settings: SettingsDep,
    registry: RegistryDep,
    limiter: LimiterDep,
    mask: Annotated[
        UploadFile,
        File(description="Semantic mask: PNG, TIFF or BMP with raw class values "
             "(grayscale/palette) or palette colours (RGB)."),
    ],
    n: Annotated[int, Form(ge=1, description="Number of variants (1..MAX_VARIANTS, 16).")] = 1,
    seed: Annotated[
        int | None,
        Form(ge=0, le=MAX_SEED, description="Base seed (random when omitted); echoed back."),
    ] = None,
    noise: Annotated[
        float, Form(ge=0.0, le=MAX_NOISE, description="Noise scale: 0 = no variation.")
    ] = 1.0,
    model: Annotated[str | None, Form(description="Model name (default: DEFAULT_MODEL).")] = None,
    format: Annotated[
        OutputFormat | None,
        Form(description="png (n=1 only), zip or json; default png for n=1, zip for n>1."),
    ] = None,
    encoding: Annotated[
        MaskEncoding,
        Form(description="auto: 2-D = raw values, RGB = colours; or values, index, color."),
    ] = "auto",
) -> Response:
    """Turn a semantic mask into ``n`` synthetic H&E images of the same size.

    Variant ``i`` uses seed ``seed + i``: sending its seed with ``n=1`` reproduces it.
    """
    fmt = _resolve_format(format, n, settings.max_variants)
    _check_seed(seed, n)
    data = await read_upload(mask, settings.max_upload_bytes, "mask")
    name = model or settings.default_model
    pipeline = await resolve_model(registry, name)
    params = GenerateParams(
        n=n, seed=seed, noise=noise, encoding=encoding,
        min_side=settings.min_mask_side, max_pixels=settings.max_pixels,
    )
    job = partial(run_generation, name, pipeline, data, mask.filename, params)
    result = await anyio.to_thread.run_sync(job, limiter=limiter)
    return _respond(result, fmt)


def _check_seed(seed: int | None, n: int) -> None:
    """The last variant's seed (``seed + n - 1``) must stay within ``MAX_SEED``."""
    if seed is not None and seed + n - 1 > MAX_SEED:
        raise validation_error(
            "seed", f"with n={n} variants must be at most {MAX_SEED - n + 1}, got {seed}",
            "less_than_equal",
        )


def _resolve_format(fmt: OutputFormat | None, n: int, max_variants: int) -> OutputFormat:
    if n > max_variants:
        raise validation_error("n", f"must be at most {max_variants}, got {n}", "less_than_equal")
    if fmt is None:
        return "png" if n == 1 else "zip"
    if fmt == "png" and n > 1:
        raise ApiError(
            400,
            "format_needs_one_image",
            f"format=png returns one image but n={n}; use format=zip or format=json",
        )
    return fmt


def run_generation(
    name: str, pipeline: Pipeline, data: bytes, filename: str | None, params: GenerateParams
) -> GenerateResult:
    """Decode the mask, generate, encode PNGs (runs in a worker thread)."""
    raw = decode_mask_file(data, filename, params.max_pixels)
    check_min_side(raw.shape, params.min_side, "mask")
    index = decode_classes(name, pipeline, raw, params.encoding)  # (H, W) int64
    try:
        gen = pipeline.generate(
            index, n=params.n, seed=params.seed, noise=params.noise, encoding="index"
        )
    except ValueError as exc:  # a combination of fields the pipeline refuses
        raise validation_error("request", str(exc), "value_error") from None
    info = GenerationInfo(
        model=name, model_sha256=pipeline.sha256, seed=gen.seed,
        noise=params.noise, width=int(index.shape[1]), height=int(index.shape[0]),
    )
    return GenerateResult(info, [encode_png(img) for img in gen.images], list(gen.seeds))


def decode_classes(
    name: str, pipeline: Pipeline, raw: np.ndarray, encoding: MaskEncoding
) -> np.ndarray:
    """Class indices (H, W); 400 listing unknown values or colours and the model's classes."""
    try:
        return pipeline.decode_mask(raw, encoding)
    except ValueError as exc:
        classes = [
            {"index": i, "name": c.name, "values": list(c.values), "color": c.color}
            for i, c in enumerate(pipeline.classes.classes)
        ]
        details: dict[str, Any] = {"model": name, "classes": classes}
        if isinstance(exc, UnknownMaskValuesError):
            details |= {"unknown_values": exc.shown, "unknown_count": exc.count}
        raise ApiError(400, "invalid_mask", str(exc), details) from None


def _headers(info: GenerationInfo, seeds: list[int]) -> dict[str, str]:
    return {
        "X-HistoSynth-Model": info.model,
        "X-HistoSynth-Model-SHA256": info.model_sha256,
        "X-HistoSynth-Seed": str(info.seed),
        "X-HistoSynth-Seeds": ",".join(str(s) for s in seeds),
    }


def _respond(result: GenerateResult, fmt: OutputFormat) -> Response:
    info, headers = result.info, _headers(result.info, result.seeds)
    stem = f"histosynth-{info.model}-{info.seed}"
    if fmt == "png":
        headers["Content-Disposition"] = f'inline; filename="{stem}.png"'
        return Response(result.pngs[0], media_type="image/png", headers=headers)
    if fmt == "zip":
        headers["Content-Disposition"] = f'attachment; filename="{stem}.zip"'
        body = build_zip(info, result.pngs, result.seeds)
        return Response(body, media_type="application/zip", headers=headers)
    payload = GenerateResponse(**info.model_dump(), images=build_images(result.pngs, result.seeds))
    return JSONResponse(payload.model_dump(), headers=headers)
