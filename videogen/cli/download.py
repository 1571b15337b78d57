"""`videogen download MODEL|PRESET`: fetch into the Hugging Face cache exactly the files a render reads."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from videogen.errors import UserError


def download(
    model: Annotated[str, typer.Argument(help="Hugging Face Hub id (org/name) or a preset naming one.",
                                         show_default=False)],
    variant: Annotated[str | None, typer.Option("--variant", help="Weights variant: fp16 | bf16.")] = None,
    revision: Annotated[str | None, typer.Option("--revision", help="Branch, tag or commit.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
) -> None:
    """Download a model's files (size shown and free disk checked first; rerun to resume). Prints the snapshot folder."""
    from videogen import hub, presets
    from videogen.loading import HUB_ID, check_model_folder
    from videogen.modelfiles import VARIANTS

    repo = model
    preset = presets.find_preset(model) if not HUB_ID.match(model) else None
    if preset is not None:
        p = presets.load_preset(model)
        if not p.model or not HUB_ID.match(p.model):
            raise UserError(f"preset {model} ({p.path}) names no Hub model (model: {p.model or 'built-in'})")
        repo = p.model
        variant = variant or p.values.get("variant")
        revision = revision or p.values.get("revision")
    elif not HUB_ID.match(model):
        raise UserError(f"'{model}' is neither a preset nor a Hugging Face Hub id (org/name)")
    if variant is not None and variant not in VARIANTS:
        raise UserError(f"--variant {variant}: unknown weights variant; use one of {', '.join(VARIANTS)}")
    if hub.offline():
        raise UserError("HF_HUB_OFFLINE is set: unset it to download")
    snapshot, _commit, _sel = hub.download(repo, revision, variant, progress=not quiet)
    check_model_folder(snapshot, variant, hub.download_hint(repo, revision, variant))  # what a render will check
    sys.stdout.write(f"{snapshot}\n")

