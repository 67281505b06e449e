"""Data-parallel training of one fold on several processes (GPUs), launched with torchrun.

    torchrun --standalone --nproc-per-node 2 -m solution.train_fold --model rcma --fold 0 --data D --work W --device cuda

Every process reads the same global batch (the same seeds draw the same crops and order)
and trains on its contiguous share of the rows; DistributedDataParallel averages the
gradients. Whatever is computed over the batch sees the whole global batch, so N processes
train what one process does with the same batch size:

- correlation losses (Pearson, CCC) and the contrastive losses gather every process's rows
  with `gather_rows` before they are computed. Its backward sums what every process's
  (identical) loss asks of a process's rows; DDP's average over the processes then gives
  exactly the single-process gradient;
- MaskedBatchNorm (solution/layers.py) sums its statistics over the processes (`all_sum`),
  which is what SyncBatchNorm does for nn.BatchNorm (the TCNs' norm counts real frames only,
  so it is synchronised here instead of converted).

What stays per process: random augmentations and dropout draw from each process's own
generator, and the augmentations that pair a sample with another one of the batch (the
dual-stage quality swap, Foal-Net's hard negatives) pick partners among that process's
rows. With those off, two processes match one within float rounding (tests/test_distributed.py).

A global batch with fewer rows than processes is computed whole by every process, and only
the first one's loss counts (scaled by the world size, so the average is that loss).

Every collective must be reached by every process in the same order: a branch taken on a
count of rows (e.g. "fewer than two rows: no contrastive loss") decides on `global_count`.
"""
from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist

_sharded = False  # True while a training step runs on this process's share of a global batch
_group = None     # the losses' and norms' own process group (see setup)


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def launched() -> bool:
    """Whether torchrun (or any launcher that sets WORLD_SIZE) started this process among others."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str) -> str:
    """Join the process group; returns this process's device (cuda:LOCAL_RANK on GPUs)."""
    if not launched():
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    global _group
    # The collectives inside the forward and backward passes get their own group: DDP's
    # gradient all-reduce runs on the default group as buckets fill, and collectives of one
    # group must come in the same order on every process, which a branch taken by one
    # process's rows only (e.g. Foal-Net's hard negatives) would not guarantee across the two.
    _group = dist.new_group()
    return device


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def from_main(value):
    """The first process's `value`, on every process."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def active() -> bool:
    return _sharded


@contextlib.contextmanager
def sharded_step(on: bool):
    """Mark the forward pass of a training step whose batch is split over the processes."""
    global _sharded
    previous, _sharded = _sharded, on
    try:
        yield
    finally:
        _sharded = previous


def shard(batch: dict, rows: int) -> tuple[dict, bool]:
    """This process's contiguous share of a collated batch, and whether it is a share (False:
    fewer rows than processes, so every process keeps the whole batch)."""
    world = world_size()
    if world == 1 or rows < world:
        return batch, False
    bounds = [round(rows * r / world) for r in range(world + 1)]
    start, stop = bounds[rank()], bounds[rank() + 1]
    out = {}
    for key, value in batch.items():
        if isinstance(value, list) or (torch.is_tensor(value) and value.dim() > 0 and value.shape[0] == rows):
            out[key] = value[start:stop]
        else:
            out[key] = value
    return out, True


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        sizes = torch.tensor([x.shape[0]], device=x.device)
        all_sizes = [torch.zeros_like(sizes) for _ in range(world_size())]
        dist.all_gather(all_sizes, sizes, group=_group)
        all_sizes = [int(s) for s in all_sizes]
        longest = max(all_sizes)
        padded = x.new_zeros((longest, *x.shape[1:]))
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in all_sizes]
        dist.all_gather(parts, padded.contiguous(), group=_group)
        ctx.sizes, ctx.rank = all_sizes, rank()
        return torch.cat([p[:n] for p, n in zip(parts, all_sizes)])

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=_group)  # every process's loss asks something of these rows: the sum
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start: start + ctx.sizes[ctx.rank]]


class _AllSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        x = x.clone()
        dist.all_reduce(x, group=_group)
        return x

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=_group)
        return grad


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Every process's rows (dim 0) in rank order, with gradients; `x` itself outside a sharded step."""
    return _GatherRows.apply(x) if _sharded else x


def all_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum over processes, with gradients; `x` itself outside a sharded step."""
    return _AllSum.apply(x) if _sharded else x


def global_count(mask: torch.Tensor) -> int:
    """How many True rows the global batch has (this process's alone outside a sharded step)."""
    count = mask.sum().reshape(1).long()
    if _sharded:
        dist.all_reduce(count, group=_group)
    return int(count)


class _PhaseLoss(torch.nn.Module):
    """The model's loss as a module's output, so DistributedDataParallel sees the forward pass
    that produced it. Always a tensor: every process must run backward in every step."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, phase: str, batch: dict, task_loss):
        loss = self.model.phase_loss(phase, batch, task_loss)
        if loss is None or not loss.requires_grad:
            return None, sum(p.sum() * 0 for p in self.model.parameters() if p.requires_grad)
        return loss, loss


class DataParallel:
    """One fold's model trained by every process on its share of each global batch (DDP)."""

    def __init__(self, model, device: str):
        from torch.nn.parallel import DistributedDataParallel

        # find_unused_parameters: a phase trains part of the model (e.g. only the encoders in
        # the contrastive stage), and a missing modality leaves its branch out of a batch.
        self.module = DistributedDataParallel(_PhaseLoss(model), find_unused_parameters=True,
                                              device_ids=[torch.device(device).index] if device.startswith("cuda") else None)

    def loss(self, phase: str, batch: dict, task_loss, autocast) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(what this process runs backward on, the step's loss or None: nothing to learn, no step)."""
        rows = len(batch["keys"])
        local, split = shard(batch, rows)
        with sharded_step(split), autocast:
            loss, backward = self.module(phase, local, task_loss)
        learn = torch.tensor([0 if loss is None else 1], device=backward.device)
        dist.all_reduce(learn, op=dist.ReduceOp.MIN)  # a step is taken by all processes or by none
        if not split:  # every process computed the whole batch: the first one's loss counts, once
            backward = backward * (world_size() if is_main() else 0.0)
        return backward, (loss.detach() if loss is not None and int(learn) else None)
