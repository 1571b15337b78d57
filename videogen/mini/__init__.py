"""The built-in miniature model: its data, training, evaluation and export.

DEFAULTS_PATH holds the built-in model's render defaults (steps, guidance, size, frames, fps, batched guidance):
the one place they live, shipped inside the model folder (so a copy of the folder keeps them). The CLI, the Python
API, evaluation and training all read it."""

from pathlib import Path

DEFAULTS_PATH = Path(__file__).resolve().parent / "model" / "videogen_defaults.json"
