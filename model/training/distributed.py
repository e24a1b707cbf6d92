"""Data-parallel training on several processes with torch.distributed (DDP's semantics).

Every process (*rank*) builds the same networks from the same seed and trains them on its
own crops: its tile samplers and noise streams are seeded with ``seed + rank``. Before every
optimiser step the gradients of that optimiser's parameters are averaged over the ranks in
one all-reduce of a flat buffer, as DDP does, so all ranks take identical steps and hold
identical weights; BatchNorm running statistics are taken from rank 0 when a scale ends
(DDP's ``broadcast_buffers``). A GAN step runs G and D several times (D on real and fake,
G through D), which ``DistributedDataParallel``'s one-forward-one-backward bookkeeping does
not fit; averaging at the optimiser leaves the training step as it is.

One environment contract, torchrun's (``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``), two ways in:

- ``torchrun --nproc-per-node K $(which histosynth) train ...`` (also across machines):
  every process finds the variables set (:func:`from_env`).
- ``histosynth train --nproc K`` or the train job's ``nproc``: :func:`launch` keeps the
  calling process as rank 0 (its progress bar, job progress and cancellation) and spawns
  ranks 1..K-1 on this machine with the same variables.

Backends: NCCL on CUDA (rank r on GPU ``LOCAL_RANK``), gloo on the CPU.
"""

from __future__ import annotations

import os
import socket
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as _mp
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

TIMEOUT = timedelta(minutes=10)


@dataclass(frozen=True)
class DistContext:
    """Who this process is in a data-parallel run (one process: rank 0 of 1).

    Args:
        rank: this process's rank.
        world: number of processes.
        local_rank: rank on this machine (the GPU it uses).
        init_method: how the group meets (``env://``: the torchrun variables).
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    init_method: str = "env://"

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that reports progress and writes the run directory."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """Rank r's device: its own GPU on CUDA, else ``device``."""
        return torch.device("cuda", self.local_rank) if device.type == "cuda" and self.enabled else device


SINGLE = DistContext()


def from_env() -> DistContext | None:
    """The torchrun variables of this process; None outside a multi-process launch."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    rank = int(os.environ["RANK"])
    return DistContext(rank, world, int(os.environ.get("LOCAL_RANK", rank)))


def check_nproc(nproc: int, device: torch.device) -> None:
    """One process per GPU: more processes than GPUs is an error that names both counts."""
    if nproc < 1:
        raise ValueError(f"nproc must be at least 1, got {nproc}")
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.type == "cuda" and nproc > gpus:
        raise ValueError(f"{nproc} processes need {nproc} GPUs (one each) but {gpus} are visible; "
                         "use at most that many or train on the CPU (--device cpu)")


def init(ctx: DistContext, device: torch.device) -> None:
    """Join the process group (NCCL on CUDA, gloo on the CPU); nothing for one process."""
    if not ctx.enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=ctx.init_method, rank=ctx.rank, world_size=ctx.world,
                            timeout=TIMEOUT)


def shutdown(ctx: DistContext, wait: bool = True, spawned: Launch | None = None) -> None:
    """Leave the group; ``wait``: together, so no rank tears down its connections while
    another still works (after a failure the others are not waiting: leave at once).

    ``spawned``: the ranks this process launched. This process (rank 0) hosts the group's
    store, so it waits until they have left and exited before it tears the group down: a
    rank whose peer's store vanished while it was still leaving could abort in gloo's C++
    teardown (``terminate called without an active exception``, a failed run).
    """
    if not (ctx.enabled and dist.is_initialized()):
        return
    try:
        if wait:
            dist.barrier()
            if spawned is not None:
                spawned.join()
    finally:
        dist.destroy_process_group()


def average_gradients(opt: torch.optim.Optimizer, ctx: DistContext) -> None:
    """Average the gradients of ``opt``'s parameters over all ranks before each of its steps."""
    if not ctx.enabled:
        return

    def hook(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads:
            flat = _flatten_dense_tensors(grads)
            dist.all_reduce(flat)
            flat /= ctx.world
            for grad, synced in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
                grad.copy_(synced)

    opt.register_step_pre_hook(hook)


def any_rank(flag: bool, ctx: DistContext, device: torch.device) -> bool:
    """True on every rank when ``flag`` is True on any (a stop must be taken together)."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean(value: float, ctx: DistContext, device: torch.device) -> float:
    """The mean of ``value`` over the ranks."""
    if not ctx.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / ctx.world


def broadcast_buffers(module: torch.nn.Module, ctx: DistContext) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank."""
    if ctx.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def gather(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj`` on rank 0 (others get an empty list)."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] | None = [None] * ctx.world if ctx.main else None
    dist.gather_object(obj, out, dst=0)
    return out or []


# ---- single-machine launch ------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(env: dict[str, str], rank: int, threads: int, target: Callable[..., Any],
               kwargs: dict[str, Any]) -> None:
    """A spawned rank: the torchrun variables, then ``target(dist_ctx=..., **kwargs)``."""
    os.environ.update({**env, "RANK": str(rank), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(threads)
    ctx = from_env()
    assert ctx is not None
    code = 0
    try:
        target(dist_ctx=ctx, **kwargs)
    except BaseException:
        traceback.print_exc()
        code = 1
    # leave without the interpreter's finalisation: the group is already destroyed, and
    # C++ destructors of torch's background threads at exit can abort a finished rank
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class Launch:
    """Ranks 1..nproc-1 spawned on this machine; this process is rank 0 (:attr:`ctx`).

    Args:
        nproc: number of processes in all.
        target: a module-level function each spawned rank runs as ``target(dist_ctx=..., **kwargs)``.
        kwargs: its arguments (picklable).
    """

    def __init__(self, nproc: int, target: Callable[..., Any], kwargs: dict[str, Any]) -> None:
        port = _free_port()
        env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(nproc)}
        self.ctx = DistContext(0, nproc, 0, init_method=f"tcp://127.0.0.1:{port}")
        spawn = _mp.get_context("spawn")
        self.procs = [
            spawn.Process(target=_rank_main, args=(env, r, torch.get_num_threads(), target, kwargs),
                          name=f"histosynth-rank{r}", daemon=True)
            for r in range(1, nproc)
        ]
        for proc in self.procs:
            proc.start()

    def join(self, timeout_s: float = 120.0) -> None:
        """Wait for the spawned ranks; a RuntimeError when one failed."""
        for proc in self.procs:
            proc.join(timeout_s)
        failed = {p.name: p.exitcode for p in self.procs if p.exitcode != 0}
        self.terminate()
        if failed:
            raise RuntimeError(f"training ranks failed: {failed} (see their output above)")

    def terminate(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(10)
