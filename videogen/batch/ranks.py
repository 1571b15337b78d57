"""Ranks (torchrun / accelerate processes sharing one plan) and the per-rank lock on an output folder."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videogen.batch.plan import Item
from videogen.errors import UserError


@dataclass
class Ranks:
    """This process's place among the batch's processes (torchrun / accelerate set RANK and WORLD_SIZE)."""

    rank: int = 0
    world: int = 1
    group: Any = None  # the process group used for coordination (gloo), when world > 1
    backend: str = ""

    def mine(self, items: list[Item]) -> list[Item]:
        return [it for it in items if it.index % self.world == self.rank]

    def gather(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier(group=self.group)

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            with contextlib.suppress(Exception):
                dist.destroy_process_group()


def launched_ranks() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment; (0, 1) when started directly."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
    except ValueError:
        raise UserError("RANK and WORLD_SIZE must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise UserError(f"RANK {rank} is not within WORLD_SIZE {world}")
    return rank, world


def init_ranks(device: str) -> Ranks:
    """Join the launcher's process group: nccl when rendering on GPUs (each rank on its LOCAL_RANK GPU), else gloo.

    Coordination (a few small objects) always goes through a gloo group, so it needs no GPU memory."""
    rank, world = launched_ranks()
    if world == 1:
        return Ranks()
    if device.startswith("cuda:"):
        raise UserError(f"--device {device}: under torchrun every rank would use that one GPU; use --device cuda "
                        "(each rank takes the GPU of its LOCAL_RANK) or auto")
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        # The spec keeps device "cuda" (no index) so run records replay on any one-GPU machine.
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank % max(torch.cuda.device_count(), 1))))
    backend = "nccl" if cuda else "gloo"
    # Ranks wait for each other only at the start and the end; one rank may finish hours before another.
    timeout = timedelta(hours=72)
    dist.init_process_group(backend=backend, timeout=timeout)
    group = dist.new_group(backend="gloo", timeout=timeout) if cuda else None
    return Ranks(rank=dist.get_rank(), world=dist.get_world_size(), group=group, backend=backend)


class FolderLock:
    """One batch process per rank and output folder: a second copy of the same command is refused, not raced."""

    def __init__(self, out_dir: Path, rank: int):
        self.path = out_dir / f".videogen-batch.rank{rank}.lock"
        self.fd: int | None = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): run unguarded
            return
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise UserError(f"another videogen batch is writing to {self.path.parent} (rank "
                                f"{rank_of(self.path)}); wait for it or use another --output-dir") from None
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    self.fd = fd
                    return
            except FileNotFoundError:
                pass
            os.close(fd)  # the holder removed this file as it finished: lock the one there now

    def release(self) -> None:
        """Remove the lock file (the folder keeps only the user's and the batch's own files), then unlock."""
        if self.fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            os.close(self.fd)  # closing drops the flock; the kernel also drops it when a process is killed
            self.fd = None


def rank_of(lock: Path) -> str:
    return lock.name.removeprefix(".videogen-batch.rank").removesuffix(".lock")
