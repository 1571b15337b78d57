from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# One torch thread per test process: the suite runs on two pytest-xdist workers (`make test`), so more threads
# per worker would only fight over the same cores. Set before torch is imported, and inherited by every
# `videogen` subprocess a test starts, so in-process and subprocess renders compute alike.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# peft (diffusers' own LoRA loader, the reference the LoRA tests compare with) is installed beside the venv's
# site-packages (`make install`), on this process's path only: a `videogen` subprocess sees what a user's install has,
# and does not pay peft's import (diffusers imports it whenever it is installed).
REFERENCE = Path(sys.prefix) / "reference"
if REFERENCE.is_dir():
    sys.path.append(str(REFERENCE))

from tiny import save_tiny_wan  # noqa: E402


@pytest.fixture(scope="session")
def tiny_wan(tmp_path_factory) -> Path:
    return save_tiny_wan(tmp_path_factory.mktemp("models") / "tiny-wan")


@pytest.fixture(scope="session")
def tiny_hunyuan(tmp_path_factory) -> Path:
    """Shared by test_hunyuan.py and test_lora_families.py (read only)."""
    from tiny_hunyuan import save_tiny_hunyuan

    return save_tiny_hunyuan(tmp_path_factory.mktemp("models") / "tiny-hunyuan")


@pytest.fixture(scope="session")
def tiny_ltx(tmp_path_factory) -> Path:
    """Shared by test_ltx.py and test_lora_families.py (read only)."""
    from tiny_ltx import save_tiny_ltx

    return save_tiny_ltx(tmp_path_factory.mktemp("models") / "tiny-ltx")


@pytest.fixture(scope="session")
def tiny_wan_euler(tmp_path_factory) -> Path:
    return save_tiny_wan(tmp_path_factory.mktemp("models") / "tiny-wan-euler", scheduler="euler")


@pytest.fixture(scope="session")
def tiny_wan_perframe(tmp_path_factory) -> Path:
    return save_tiny_wan(tmp_path_factory.mktemp("models") / "tiny-wan-perframe", vae="kl")


@pytest.fixture(scope="session")
def tiny_wan_tubelet(tmp_path_factory) -> Path:
    """Patches two latent frames deep, as the built-in model's span all of its latent frames."""
    return save_tiny_wan(tmp_path_factory.mktemp("models") / "tiny-wan-tubelet", patch=(2, 2, 2))


@pytest.fixture(scope="session")
def tiny_ltx2(tmp_path_factory) -> Path:
    from tiny_ltx2 import save_tiny_ltx2

    return save_tiny_ltx2(tmp_path_factory.mktemp("models") / "tiny-ltx2")


@pytest.fixture(scope="session")
def tiny_ltx2_3(tmp_path_factory) -> Path:
    """The LTX-2.3 layout (per-modality connectors, gated attention, prompt modulation, bandwidth extension)."""
    from tiny_ltx2 import save_tiny_ltx2

    return save_tiny_ltx2(tmp_path_factory.mktemp("models") / "tiny-ltx2.3", version="2.3")

