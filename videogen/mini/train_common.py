"""What every training stage of the built-in model shares: the log, atomic saves, the lr schedule and one
resumable checkpoint (modules, optimizer, step, random generators) saved every few minutes."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def log(work: Path, msg: str) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    with open(work / "log.txt", "a") as f:
        f.write(line + "\n")


def atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def cosine_lr(opt: torch.optim.Optimizer, base: float, step: int, total: int, floor: float = 0.05) -> float:
    """Set (and return) a cosine learning rate from `base` down to `floor * base` over `total` steps."""
    lr = base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * step / total)))
    for g in opt.param_groups:
        g["lr"] = lr
    return lr


class Checkpoint:
    """One stage's resumable state in one file.

    `modules` and `rngs` are restored in place by `resume`; `extra` holds whatever else the stage keeps (it
    is returned by `resume` and saved by `save`). Saves are atomic, so a killed run resumes from the last one.
    """

    def __init__(self, path: Path, modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer,
                 rngs: dict[str, np.random.Generator], every_s: float) -> None:
        self.path, self.modules, self.opt, self.rngs, self.every_s = path, modules, opt, rngs, every_s
        self.last = time.time()

    def resume(self) -> tuple[int, dict[str, Any]] | None:
        """(step, extra) of the saved state, restored into the modules, optimizer and generators; None if none."""
        if not self.path.exists():
            return None
        s = torch.load(self.path, weights_only=False, map_location="cpu")
        for key, module in self.modules.items():
            module.load_state_dict(s[key])
        self.opt.load_state_dict(s["opt"])
        for key, rng in self.rngs.items():
            rng.bit_generator.state = s[key]
        torch.set_rng_state(s["torch_rng"])
        return s["step"], s.get("extra", {})

    def save(self, step: int, extra: dict[str, Any] | None = None) -> None:
        state = {key: m.state_dict() for key, m in self.modules.items()}
        state.update({key: rng.bit_generator.state for key, rng in self.rngs.items()})
        state.update(opt=self.opt.state_dict(), step=step, torch_rng=torch.get_rng_state(), extra=extra or {})
        atomic_save(state, self.path)
        self.last = time.time()

    def due(self) -> bool:
        return time.time() - self.last > self.every_s
