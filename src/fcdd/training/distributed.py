"""Data-parallel training: one model, several processes, PyTorch's DistributedDataParallel.

``torchrun --nproc-per-node N -m fcdd train ...`` starts N processes (``fcdd train --devices N``
re-executes itself so); each reads its place from torchrun's ``RANK`` / ``WORLD_SIZE`` /
``LOCAL_RANK``. Every process draws the same data order, augmentation and synthetic anomalies
for the whole global batch from the run's seeded streams and keeps its own contiguous shard of
it (``shard``), so the shards' union is the batch one process would train on. DDP averages the
gradients, batch norm normalises with the global batch's statistics (``SyncBatchNorm`` on GPUs,
``GlobalBatchNorm2d`` on the CPU, where torch's takes GPU tensors only) and the logged loss sums
are summed over the processes (``reduce_sums``): the run equals one process with the same
``batch_size`` up to the order of float additions. Rank 0 alone writes the run folder; the
model's own state (no DDP ``module.`` prefix) is what checkpoints hold, so a run resumes with
any number of processes. Outside torchrun everything here is a world of one and does nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fcdd.data.supervision import Batch
from fcdd.methods import Method
from fcdd.runtime import pick_device, progress_setting

log = logging.getLogger("fcdd")

#: torchrun's environment variables that place a process in its group
ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs and writes the run folder."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1

    def share(self, value: Any) -> Any:
        """Rank 0's ``value`` on every process (a choice only rank 0 may make, e.g. a new run folder)."""
        if not self.parallel:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def launched() -> World:
    """This process's place as torchrun's environment gives it (a world of one without it)."""
    if "WORLD_SIZE" not in os.environ:
        return World()
    try:
        rank, size, local = (int(os.environ.get(name, "0")) for name in ENV)
    except ValueError:
        raise ValueError(f"torchrun's {'/'.join(ENV)} must be whole numbers, got "
                         f"{', '.join(repr(os.environ.get(n)) for n in ENV)}") from None
    if not 0 <= rank < size:
        raise ValueError(f"RANK {rank} outside a WORLD_SIZE of {size}")
    return World(rank, size, local)


def current() -> World:
    """The running process group's world, else the launched one (before ``session`` starts it)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), launched().local_rank)
    return launched()


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(device: torch.device, world: World | None = None) -> torch.device:
    """The device of this process: with several processes each takes the GPU of its local rank
    (any index ``--device`` named is replaced), other devices stay as they are."""
    world = world or current()
    if not world.parallel or device.type != "cuda":
        return device
    if world.local_rank >= torch.cuda.device_count():
        raise ValueError(f"process {world.rank} has local rank {world.local_rank}, but this machine has "
                         f"{torch.cuda.device_count()} GPU(s); start at most one process per GPU")
    torch.cuda.set_device(world.local_rank)
    return torch.device("cuda", world.local_rank)


@contextlib.contextmanager
def quiet_unless_main(world: World) -> Iterator[None]:
    """Ranks above 0 log errors only and draw no progress bars: the console shows one run."""
    if world.is_main:
        yield
        return
    logger = logging.getLogger("fcdd")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with progress_setting(False):
            yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def session(device: str) -> Iterator[World]:
    """The process group of a torchrun launch for the block, started here unless one runs (the
    command line starts it before choosing a run folder, ``execute`` finds it); a group started
    here meets at a barrier when the block succeeds, so no process leaves while rank 0 still
    writes, and is destroyed after it."""
    started = False
    if not (dist.is_available() and dist.is_initialized()):
        world = launched()
        if not world.parallel:
            yield world
            return
        if not dist.is_available():
            raise ValueError("this torch build has no torch.distributed; train with one process")
        chosen = rank_device(pick_device(device), world)
        dist.init_process_group(backend_for(chosen))
        started = True
    world = current()
    try:
        with quiet_unless_main(world):
            yield world
        if started:
            dist.barrier()
    finally:
        if started:
            dist.destroy_process_group()


# --- a batch's share ------------------------------------------------------------------------------
@dataclass
class Shard(Batch):
    """This process's contiguous part of a global batch of ``whole`` images."""

    whole: int = 0


def shard_bounds(whole: int, world: World) -> tuple[int, int]:
    """``[start, stop)`` of ``world.rank``'s part of ``whole`` items: contiguous, sizes differing by
    at most one, the first ``whole % size`` ranks one larger (``torch.tensor_split``'s rule)."""
    base, extra = divmod(whole, world.size)
    start = world.rank * base + min(world.rank, extra)
    return start, start + base + (world.rank < extra)


def shard(batch: Batch, world: World | None = None) -> Batch:
    """This process's part of ``batch``, the global batch every process made alike (the batch
    itself with one process)."""
    world = world or current()
    if not world.parallel:
        return batch
    start, stop = shard_bounds(len(batch.images), world)
    return Shard(batch.images[start:stop], batch.labels[start:stop], batch.maps[start:stop], batch.use_maps,
                 whole=len(batch.images))


# --- the model --------------------------------------------------------------------------------------
class AllSum(torch.autograd.Function):
    """The sum of a tensor over all processes, differentiable: the gradient of each process's
    input is the sum of all processes' output gradients (every loss depends on every input)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.contiguous().clone()
        dist.all_reduce(total)
        return total


def all_sum(tensor: torch.Tensor) -> torch.Tensor:
    return AllSum.apply(tensor)


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` over the global batch of all processes, for CPU tensors (gloo), which
    ``torch.nn.SyncBatchNorm`` refuses. Mean and variance come from all-reduced sums in two passes
    (mean first, then squared deviations from it, as the single-process kernel computes them);
    the all-reduces are differentiable, so each process's gradient flows through the statistics
    the other processes' images shaped, as it would through one batch. Outside training, or in a
    world of one, it is the plain batch norm."""

    @classmethod
    def replacing(cls, bn: nn.BatchNorm2d) -> GlobalBatchNorm2d:
        """A global batch norm holding ``bn``'s own parameters and buffers (the optimiser keeps them)."""
        new = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        new.weight, new.bias = bn.weight, bn.bias
        new.running_mean, new.running_var, new.num_batches_tracked = bn.running_mean, bn.running_var, bn.num_batches_tracked
        new.train(bn.training)
        return new

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        x = input.float()
        dims, shape = (0, 2, 3), (1, -1, 1, 1)
        count = torch.tensor([x.numel() // x.shape[1]], dtype=x.dtype, device=x.device)
        totals = all_sum(torch.cat([x.sum(dims), count]))
        n = totals[-1]
        mean = totals[:-1] / n
        centred = x - mean.view(shape)
        var = all_sum((centred * centred).sum(dims)) / n
        self._update_running_stats(mean.detach(), var.detach(), n.detach())
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, n: torch.Tensor) -> None:
        """The running averages as ``BatchNorm2d`` keeps them (unbiased variance, momentum or the
        cumulative average when ``momentum`` is None)."""
        if not self.track_running_stats:
            return
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * n / (n - 1).clamp(min=1)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)


def sync_batch_norm(module: nn.Module, device: torch.device) -> int:
    """Replace, in place, every ``BatchNorm2d`` by one that normalises over the global batch in
    training mode; returns how many were replaced. Frozen stages in eval mode keep their running
    statistics and never synchronise; with ``--frozen-bn adapt`` they train and synchronise too."""
    make: Callable[[nn.BatchNorm2d], nn.Module] = (
        nn.SyncBatchNorm.convert_sync_batchnorm if device.type == "cuda" else GlobalBatchNorm2d.replacing
    )
    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.BatchNorm2d:
                setattr(parent, name, make(child))
                replaced += 1
    return replaced


class TrainingLoss(nn.Module):
    """The method's per-sample training loss as a forward pass: what DDP wraps, since its gradient
    hooks and buffer broadcasts run around ``forward``."""

    def __init__(self, method: Method) -> None:
        super().__init__()
        self.method = method

    def forward(self, images: torch.Tensor, labels: torch.Tensor, maps: torch.Tensor, use_maps: bool) -> torch.Tensor:
        return self.method.training_loss(images, labels, maps, use_maps)


#: ``(batch, sync) -> per-sample losses``; ``sync`` False: the optimiser does not step after this
#: batch (gradient accumulation), so DDP keeps its gradients local until a batch that syncs
BatchLosses = Callable[[Batch, bool], torch.Tensor]


def batch_losses(method: Method, device: torch.device, batch_size: int) -> BatchLosses:
    """The method's own loss in one process; with several, through DDP on the process's shard,
    with batch norms synchronised, and with the gradient weighted so that DDP's average of the
    shards' means is the global batch's mean when shards differ in size."""
    world = current()
    if not world.parallel:
        return lambda b, sync=True: method.training_loss(b.images, b.labels, b.maps, b.use_maps)
    if batch_size < world.size:
        raise ValueError(f"--batch-size {batch_size} is smaller than the {world.size} training processes: "
                         "each needs at least one image of every batch")
    replaced = sync_batch_norm(method, device)
    wrapped = DistributedDataParallel(TrainingLoss(method), device_ids=[device.index] if device.type == "cuda" else None)
    if world.is_main:
        log.info("data parallel: %d processes (%s), %d batch norm(s) synchronised", world.size, backend_for(device), replaced)

    def losses(batch: Batch, sync: bool = True) -> torch.Tensor:
        with contextlib.nullcontext() if sync else wrapped.no_sync():  # DDP decides in forward
            out = wrapped(batch.images, batch.labels, batch.maps, batch.use_maps)
        if isinstance(batch, Shard) and batch.whole and out.requires_grad:
            weight = world.size * len(batch.images) / batch.whole
            if weight != 1.0:
                out.register_hook(lambda grad: grad * weight)
        return out

    return losses


def reduce_sums(sums: torch.Tensor, n_anomalous: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """An epoch's loss sums, anomalous count and image count over all processes (as they are in one)."""
    if not current().parallel:
        return sums, n_anomalous, n
    packed = torch.cat([sums.double(), n_anomalous.double().view(1), torch.tensor([float(n)], dtype=torch.float64, device=sums.device)])
    dist.all_reduce(packed)
    return packed[:-2].to(sums.dtype), packed[-2].round().to(n_anomalous.dtype), int(round(float(packed[-1])))


# --- starting the processes ------------------------------------------------------------------------
def check_process_count(count: int, device: str) -> torch.device:
    """The device the ``count`` processes train on; a ``ValueError`` when GPUs are asked of more
    processes than there are GPUs."""
    chosen = pick_device(device)
    if chosen.type == "cuda" and count > torch.cuda.device_count():
        raise ValueError(f"--devices {count} on CUDA, but this machine has {torch.cuda.device_count()} GPU(s)")
    if chosen.type not in ("cuda", "cpu"):
        raise ValueError(f"--devices {count}: several processes train on CUDA GPUs or the CPU, not {chosen.type}")
    return chosen


def relaunch(count: int, argv: Sequence[str], threads: int = 0) -> int:
    """Run ``python -m torch.distributed.run --standalone --nproc-per-node count argv``: the same
    launch as torchrun's, on this machine; returns its exit status. CPU processes share the cores
    (``OMP_NUM_THREADS``, unless set or ``threads`` asks for a count)."""
    env = dict(os.environ)
    if threads <= 0:
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // count)))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={count}", *argv]
    return subprocess.run(command, env=env, check=False).returncode


__all__ = [
    "AllSum", "BatchLosses", "GlobalBatchNorm2d", "all_sum", "Shard", "TrainingLoss", "World", "backend_for", "batch_losses",
    "check_process_count", "current", "launched", "quiet_unless_main", "rank_device", "reduce_sums", "relaunch",
    "session", "shard", "shard_bounds", "sync_batch_norm",
]
