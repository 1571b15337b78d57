"""videogen: text-to-video from the terminal with open latent video diffusion models.

Python API (see README, "Python API"): `videogen.generate(prompt, **settings)` renders one video;
`videogen.load(model, **engine_settings)` loads a model once for many `.generate(prompt, **settings)` calls."""

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "generate", "load"]


def __getattr__(name: str) -> Any:  # the API is imported on first use: `import videogen` stays light
    if name in ("generate", "load", "Result", "Session"):
        from videogen import api

        return getattr(api, name)
    raise AttributeError(f"module 'videogen' has no attribute {name!r}")
