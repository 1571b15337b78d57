"""Model cards: each preset's full-size component configs, weight counts and files, shipped as JSON.

A card lets `videogen plan` and `videogen models --card` work without the weights. The same description can be
read from a local diffusers folder (its model_index.json and config files), for models that have no card.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videogen.errors import UserError

CARDS_DIR = Path(__file__).resolve().parent.parent / "presets" / "cards"
# Components that are torch modules and hold weights; tokenizers and schedulers are small files.
MODULE_LIBRARIES = {"diffusers", "transformers"}
NOT_MODULES = {"scheduler"}


@dataclass
class Card:
    name: str
    repo: str | None
    data: dict[str, Any]  # the card as stored

    @property
    def components(self) -> dict[str, Any]:
        return self.data["components"]

    def component(self, name: str) -> Any:
        from videogen.plan.components import Component

        c = self.components[name]
        return Component(name, c["library"], c["class"], c["config"], list(c.get("repeat", [])),
                         c.get("runs_in", "model"))

    def stats(self, name: str) -> Any:
        from videogen.plan.components import WeightStats

        return WeightStats(**self.components[name]["weights"])


def card_names() -> list[str]:
    return sorted(p.stem for p in CARDS_DIR.glob("*.json"))


def load_card(name: str) -> Card:
    path = CARDS_DIR / f"{name}.json"
    if not path.is_file():
        from videogen.presets import suggest

        raise UserError(f"no model card for preset '{name}'{suggest(name, card_names())} "
                        f"(cards: {', '.join(card_names())})")
    data = json.loads(path.read_text(encoding="utf-8"))
    return Card(name, data.get("repo"), data)


def _read_json(path: Path) -> dict[str, Any]:
    from videogen.jsonfile import read_object

    return read_object(path, "a model config")


def repeat_keys(config: dict[str, Any]) -> list[str]:
    """Config keys that count repeated blocks (the planner traces one of each)."""
    keys = ("num_layers", "num_single_layers", "num_hidden_layers")
    return [k for k in keys if isinstance(config.get(k), int) and config[k] > 1]


def latent_geometry(vae: dict[str, Any], transformer: dict[str, Any]) -> dict[str, int]:
    """Latent channels and the VAE's temporal and spatial compression, read from the configs."""
    from videogen.vae import vae_geometry

    try:
        geo = vae_geometry(vae)
        temporal, spatial = geo.temporal, geo.spatial
    except ValueError:
        temporal = int(vae.get("temporal_compression_ratio") or 1)
        spatial = int(vae.get("spatial_compression_ratio") or 8)
    channels = transformer.get("out_channels") or vae.get("latent_channels") or vae.get("z_dim")
    return {"channels": int(channels), "temporal": temporal, "spatial": spatial}


def _holds_weights(entry: list[Any]) -> bool:
    """A model_index.json entry that is a torch module: a diffusers or transformers class, or one of a diffusers
    pipeline package (LTX-2's connectors and vocoder live in `diffusers.pipelines.ltx2`); not a guider, tokenizer
    or image processor, which those libraries also hold."""
    import importlib

    import torch

    library, name = str(entry[0]), entry[1]
    try:
        module = importlib.import_module(library if library in MODULE_LIBRARIES else f"diffusers.pipelines.{library}")
    except ImportError:
        return False
    cls = getattr(module, name, None) if isinstance(name, str) else None
    return isinstance(cls, type) and issubclass(cls, torch.nn.Module)


def card_from_folder(path: Path) -> Card:
    """A card for a local diffusers folder: its own configs, weights counted on the meta device."""
    from videogen.plan.components import Component, weight_stats

    index = _read_json(path / "model_index.json")
    comps: dict[str, Any] = {}
    for name, entry in index.items():
        if (name.startswith("_") or not isinstance(entry, list) or not _holds_weights(entry)
                or name in NOT_MODULES or name.startswith("tokenizer")):
            continue
        config = _read_json(path / name / "config.json")
        if entry[0] == "transformers" and "model_type" not in config:
            raise UserError(f"{path / name / 'config.json'}: no model_type")
        comp = Component(name, entry[0], entry[1], config, repeat_keys(config),
                         "float32" if name == "vae" else "model")
        comps[name] = {"library": entry[0], "class": entry[1], "config": config, "repeat": comp.repeat,
                       "runs_in": comp.runs_in, "weights": weight_stats(comp).__dict__}
    if "transformer" not in comps or "vae" not in comps:
        raise UserError(f"{path}: videogen plan needs a transformer and a vae in model_index.json")
    tok = path / "tokenizer" / "tokenizer_config.json"
    max_len = int(_read_json(tok).get("model_max_length", 512)) if tok.is_file() else 512
    data = {"repo": str(path), "pipeline": index.get("_class_name"), "components": comps,
            "latent": latent_geometry(comps["vae"]["config"], comps["transformer"]["config"]),
            "text_tokens": {n: min(max_len, 512) for n in comps if n.startswith("text_encoder")},
            "guidance": "cfg"}
    import contextlib

    from videogen.families import family_for

    # what the family declares for the planner; a folder of a family videogen does not run has no such facts
    with contextlib.suppress(UserError):
        data.update(family_for(index, str(path / "model_index.json")).plan_facts)
    return Card(path.name, str(path), data)


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _count(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.2f} M"


def card_text(name: str) -> str:
    """`videogen models --card NAME`: parameters per component, download size and disk needed."""
    card = load_card(name)
    d = card.data
    est = " (estimated)" if d.get("download_estimated") else ""
    lines = [f"{name}: {card.repo}", "", f"{'component':<16}{'class':<34}{'parameters':>12}  on disk"]
    for comp, c in card.components.items():
        size = sum(f["bytes"] for f in c["files"])
        marks = " (estimated)" if any(f["estimated"] for f in c["files"]) else ""
        lines.append(f"{comp:<16}{c['class']:<34}{_count(c['weights']['parameters']):>12}  "
                     f"{_size(size)} {c['disk_dtype']}{marks}")
    total = d["download_bytes"]
    if "installed_bytes" in d:  # the built-in model
        lines += ["", f"download: none (ships with videogen, {len(d['files'])} files)",
                  f"disk needed: none beyond the install ({_size(d['installed_bytes'])})"]
    else:
        lines += ["", f"download: {_size(total)} in {len(d['files'])} files{est}",
                  f"disk needed: {_size(total)} in the Hugging Face cache (each file is stored once)"]
    lines += ["", "sources:"]
    lines += [f"  {comp}: config from {c['config_source']}; on-disk dtype: {c['disk_dtype_source']}"
              for comp, c in card.components.items()]
    if d.get("note"):
        lines += ["", d["note"]]
    return "\n".join(lines) + "\n"
