"""The process's memory allocator: which one is loaded, preloading tcmalloc, handing memory back.

Training and inference on a CPU allocate and free tensors of tens of MiB at every step. The C
library's malloc serves blocks above 32 MiB (and often smaller ones) with fresh ``mmap`` calls
and returns them on free, so every step pays the page faults of touching new memory again:
in a profile of one joint training step, concatenations, BatchNorm and a 1x1 conv's backward
over 25 MiB tensors ran 3.5-5x slower than the same ops in a loop. tcmalloc keeps freed blocks for reuse.
It can only replace malloc when it is loaded first (``LD_PRELOAD``), so the ``histosynth``
command restarts itself with it (:func:`preload_environment`, ``service/launch.py``).

Nothing here imports torch: the launcher decides before anything heavy is loaded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, get_args

#: ``HISTOSYNTH_ALLOCATOR``: ``auto`` preloads tcmalloc when it is installed, ``tcmalloc``
#: requires it, ``system`` keeps the C library's malloc.
Allocator = Literal["auto", "tcmalloc", "system"]
ALLOCATORS: tuple[str, ...] = get_args(Allocator)

#: Debian and Ubuntu package of the library.
TCMALLOC_PACKAGE = "libtcmalloc-minimal4"
#: Libraries that replace malloc when preloaded (their names in ``LD_PRELOAD`` and the maps).
_REPLACEMENTS = ("tcmalloc", "jemalloc", "mimalloc")
#: tcmalloc reports every allocation above this many bytes on stderr (default 1 GiB: a
#: 4096 x 4096 generation would print stack traces); 1 TiB keeps stderr quiet.
_QUIET_LARGE_ALLOC = str(1 << 40)


def find_tcmalloc() -> str | None:
    """The tcmalloc library to preload (``libtcmalloc_minimal.so.4``), or None if not installed."""
    for name in ("tcmalloc_minimal", "tcmalloc"):
        found = ctypes.util.find_library(name)
        if found:
            return found
    return None


def preload_environment(
    choice: str, environ: Mapping[str, str], library: str | None, platform: str = sys.platform
) -> dict[str, str] | None:
    """The environment to restart the process in with tcmalloc, or None to keep this process.

    Args:
        choice: ``auto``, ``tcmalloc`` or ``system``.
        environ: the current environment.
        library: what :func:`find_tcmalloc` found.
        platform: ``sys.platform`` (only Linux's loader reads ``LD_PRELOAD`` this way).

    Raises:
        ValueError: an unknown ``choice``, or ``tcmalloc`` asked for but not installed.
    """
    if choice not in ALLOCATORS:
        raise ValueError(f"HISTOSYNTH_ALLOCATOR must be one of {', '.join(ALLOCATORS)}, got {choice!r}")
    preloaded = environ.get("LD_PRELOAD", "")
    if choice == "system" or any(name in preloaded for name in _REPLACEMENTS):
        return None  # the user's own preload (or this process's restart) wins
    if library is None or not platform.startswith("linux"):
        if choice == "tcmalloc":
            raise ValueError(f"HISTOSYNTH_ALLOCATOR=tcmalloc, but tcmalloc is not installed "
                             f"(Debian/Ubuntu: apt-get install {TCMALLOC_PACKAGE}; Linux only)")
        return None
    env = dict(environ)
    env["LD_PRELOAD"] = f"{library} {preloaded}".strip()
    env.setdefault("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD", _QUIET_LARGE_ALLOC)
    return env


def in_use(maps: Path = Path("/proc/self/maps")) -> str:
    """``tcmalloc``, ``jemalloc`` or ``mimalloc`` when one is mapped into this process, else
    ``system`` (also where ``/proc`` is missing)."""
    try:
        text = maps.read_text()
    except OSError:
        return "system"
    return next((name for name in _REPLACEMENTS if f"lib{name}" in text), "system")


def release_free_memory() -> None:
    """Hand freed but cached memory back to the OS, so that resident memory measured next
    starts from what is really in use (tcmalloc keeps freed blocks; glibc keeps its heap top)."""
    if not sys.platform.startswith("linux"):
        return
    process = ctypes.CDLL(None)
    release = getattr(process, "MallocExtension_ReleaseFreeMemory", None)  # tcmalloc's C API
    trim = getattr(process, "malloc_trim", None)  # glibc's
    if release is not None:
        release()
    elif trim is not None and in_use() == "system":
        trim(0)


def describe() -> str:
    """One log line on the allocator, with the hint to install tcmalloc where it is missing."""
    name = in_use()
    if name != "system":
        return f"memory allocator: {name}"
    if find_tcmalloc() is None:
        return (f"memory allocator: the C library's malloc; CPU training and inference run faster with "
                f"tcmalloc (apt-get install {TCMALLOC_PACKAGE}; the histosynth command then preloads it)")
    return ("memory allocator: the C library's malloc; tcmalloc is installed but not loaded (the histosynth "
            "command preloads it unless HISTOSYNTH_ALLOCATOR=system); CPU training and inference run faster with it")
