"""`videogen download MODEL|PRESET`: fetch into the Hugging Face cache exactly the files a render reads."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from videogen.errors import UserError


def download(
    model: Annotated[str, typer.Argument(help="Hugging Face Hub id (org/name) or a preset naming one; or a LoRA: "
                                              "org/name (its one .safetensors file) or org/name/file.safetensors. "
                                              "org/name@REV is org/name --revision REV.",
                                         show_default=False)],
    variant: Annotated[str | None, typer.Option("--variant", help="Weights variant: fp16 | bf16.")] = None,
    revision: Annotated[str | None, typer.Option("--revision", help="Branch, tag or commit.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
) -> None:
    """Download a model's files (size shown and free disk checked first; rerun to resume). Prints the snapshot folder
    (for a LoRA, its file)."""
    from videogen import hub, presets
    from videogen.loading import HUB_ID, check_model_folder
    from videogen.lora import hubref
    from videogen.lora.refs import hub_id_of
    from videogen.modelfiles import VARIANTS

    parts = hub_id_of(model)
    if parts is not None and parts[2] is not None:  # org/name@REV[/file]: the revision spelled as --lora takes it
        if revision is not None and revision != parts[2]:
            raise UserError(f"'{model}' names revision {parts[2]} and --revision {revision}: give one")
        revision = parts[2]
        model = parts[0] + (f"/{parts[1]}" if parts[1] else "")
    repo = model
    lora = parts if parts is not None and parts[1] is not None else None
    if lora is not None:  # org/name/file.safetensors: one LoRA file
        if variant is not None:
            raise UserError("--variant is for models; a LoRA file is fetched as it is")
        if hub.offline():
            raise UserError("HF_HUB_OFFLINE is set: unset it to download")
        sys.stdout.write(f"{hubref.download(lora[0], lora[1], progress=not quiet, revision=revision).path}\n")
        return
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
    try:
        snapshot, _commit, _sel = hub.download(repo, revision, variant, progress=not quiet)
    except hub.NotADiffusersModel as e:
        if preset is not None or variant is not None:
            raise
        # No model_index.json: a LoRA repo, whose one .safetensors file is fetched (several must be named).
        _commit, files = hubref.remote_files(repo, revision)
        if not files:
            raise UserError(f"{e} nor a LoRA (no .safetensors file)") from None
        sys.stdout.write(f"{hubref.download(repo, None, progress=not quiet, revision=revision).path}\n")
        return
    check_model_folder(snapshot, variant, hub.download_hint(repo, revision, variant))  # what a render will check
    sys.stdout.write(f"{snapshot}\n")

