from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

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
