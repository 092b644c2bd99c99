"""Several processes (GPUs, or CPU processes over gloo) training one model: what FISH-DIP needs.

Launch with ``accelerate launch -m fishdip train ...`` or ``torchrun --nproc-per-node N -m fishdip
train ...``; Accelerate's ``PartialState`` reads the launcher's environment and sets up the process
group (NCCL on GPUs, gloo on CPUs). Every process holds the whole model, its own identical sparse
optimizer state, and a share of each batch:

- a training step: each process runs its share of every micro-batch; the gradients are summed
  across processes before the optimizer step. Sparse methods sum only the gathered masked entries
  (1 % of a dense all-reduce); ``full`` sums dense gradients. No DDP wrapper: its bucketed
  all-reduce would fire on the per-sample Fisher backward passes too, and reduce dense gradients
  the sparse methods never use.
- a mask refresh: each process ranks its share of the training samples, the losses are gathered,
  every process picks the same most-regressing samples, computes the Fisher scores of its share
  of them, and the scores are summed; every process then selects the same top-k (checked by a
  checksum compared across processes).
- evaluation: each process generates for its share of the sentences; the main process gathers
  them in order and scores them. Only the main process writes files, logs and progress bars.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class Dist:
    """This process's place among the processes of a run (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str = "gloo"  # NCCL reduces CUDA tensors only: CPU tensors are moved there and back

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def share(self, items: list) -> list:
        """This process's share: every ``world``-th item from its rank on."""
        return items[self.rank :: self.world] if self.active else items

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over processes in place (every process gets the same values)."""
        if not self.active:
            return tensor
        if self.backend == "nccl" and tensor.device.type == "cpu":
            on_gpu = tensor.to(torch.device("cuda", self.local_rank))
            torch_dist.all_reduce(on_gpu, op=torch_dist.ReduceOp.SUM)
            return tensor.copy_(on_gpu)
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
        return tensor

    def gather(self, obj) -> list:
        """Every process's ``obj``, in rank order, on every process."""
        if not self.active:
            return [obj]
        out = [None] * self.world
        torch_dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):
        """The main process's ``obj`` on every process."""
        if not self.active:
            return obj
        box = [obj]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            torch_dist.barrier()

    def unshard(self, shards: list[list]) -> list:
        """Undo ``share``: the per-process lists (from ``gather``) back in the original order."""
        out = []
        for i in range(max((len(s) for s in shards), default=0)):
            out += [s[i] for s in shards if i < len(s)]
        return out


SINGLE = Dist()


def launched() -> bool:
    """Started by torchrun / accelerate launch with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str) -> Dist:
    """The process group of a launched run (Accelerate's PartialState sets it up), else one process."""
    if not launched():
        return SINGLE
    from accelerate import PartialState

    cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    state = PartialState(cpu=cpu)
    # A process that exits with its process group alive can die in C++ ("terminate called without an
    # active exception") while gloo's threads are torn down; close the group first. atexit: the
    # Python API may train several times in one process on the same group.
    atexit.unregister(_close_process_group)  # once, however often setup() runs
    atexit.register(_close_process_group)
    return Dist(state.process_index, state.num_processes, state.local_process_index,
                torch_dist.get_backend() if torch_dist.is_initialized() else "gloo")


def _close_process_group() -> None:
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def pick_device(name: str, dist: Dist = SINGLE) -> torch.device:
    """``auto``: a GPU if there is one (with several processes: the process's own GPU), else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and dist.active:
        return torch.device("cuda", dist.local_rank)
    return torch.device(name)
