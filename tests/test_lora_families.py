"""LoRAs in their original key names for HunyuanVideo and LTX-Video, against diffusers' `load_lora_weights` + the
family's pipeline on tiny random models; and the refusal of a LoRA for a family whose pipeline has no loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tiny_lora import model_shapes

from videogen.engine import Engine
from videogen.spec import RenderSpec

TOL = 1e-4
PROMPT = "a red cat runs on the beach"
STEPS, SEED = 2, 7
SHAPES = {"hunyuan": (5, 16), "ltx": (9, 32)}  # (frames, size): the smallest each family's VAE takes


def spec_for(folder: Path, *loras: str) -> RenderSpec:
    frames, size = SHAPES[folder.name.removeprefix("tiny-")]
    # fps 25: LTX's pipeline conditions its RoPE on frame_rate, 25 by default (HunyuanVideo ignores it)
    return RenderSpec(prompt=PROMPT, model=str(folder), frames=frames, height=size, width=size, steps=STEPS,
                      guidance=3.0, seed=SEED, fps=25, device="cpu", dtype="float32", loras=tuple(loras))


def diffusers_frames(pipe, loras: list[tuple[Path, float]], family: str) -> torch.Tensor:
    """The family's pipeline with diffusers' own loader (`load_lora_weights` + `set_adapters`), frames [F,H,W,3]."""
    for i, (path, _w) in enumerate(loras):
        pipe.load_lora_weights(str(path), adapter_name=f"l{i}")
    if loras:
        pipe.set_adapters([f"l{i}" for i in range(len(loras))], [w for _p, w in loras])
    frames, size = SHAPES[family]
    torch.manual_seed(SEED)  # LTX's decoder draws from the global RNG; videogen seeds it the same way
    out = pipe(prompt=PROMPT, num_frames=frames, height=size, width=size, num_inference_steps=STEPS,
               guidance_scale=3.0, generator=torch.Generator("cpu").manual_seed(SEED), output_type="pt")
    if loras:
        pipe.unload_lora_weights()
    return out.frames[0].permute(0, 2, 3, 1).float()


class Lora:
    """A random LoRA on original (fused) layers: {original layer: (down, up, alpha)}, and its diffusers twin."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], layers: dict[str, tuple[str, ...]], seed: int,
                 alpha: float | None, rank: int = 2):
        g = torch.Generator().manual_seed(seed)
        self.layers, self.alpha, self.parts = {}, alpha, layers
        for orig, parts in layers.items():
            rows = sum(shapes[f"{p}.weight"][0] for p in parts)
            fan_in = shapes[f"{parts[0]}.weight"][1]
            self.layers[orig] = (torch.randn(rank, fan_in, generator=g) * 0.5, torch.randn(rows, rank, generator=g) * 0.5)
        self.shapes = shapes

    def write_original(self, path: Path, prefix: str, down_up: tuple[str, str] = ("lora_A", "lora_B"),
                       underscores: bool = False) -> Path:
        sd = {}
        for orig, (down, up) in self.layers.items():
            key = prefix + (orig.replace(".", "_") if underscores else orig)
            sd[f"{key}.{down_up[0]}.weight"], sd[f"{key}.{down_up[1]}.weight"] = down, up
            if self.alpha is not None:
                sd[f"{key}.alpha"] = torch.tensor(self.alpha)
        save_file(sd, str(path))
        return path

    def write_diffusers(self, path: Path) -> Path:
        """The same LoRA as diffusers' PEFT format: fused rows split by hand, alpha / rank folded into down."""
        sd = {}
        for orig, (down, up) in self.layers.items():
            scale = 1.0 if self.alpha is None else self.alpha / down.shape[0]
            start = 0
            for part in self.parts[orig]:
                n = self.shapes[f"{part}.weight"][0]
                sd[f"transformer.{part}.lora_A.weight"] = (down * scale).contiguous()
                sd[f"transformer.{part}.lora_B.weight"] = up[start:start + n].contiguous()
                start += n
        save_file(sd, str(path))
        return path


# --- HunyuanVideo ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hunyuan(tiny_hunyuan):
    from diffusers import HunyuanVideoPipeline

    folder = tiny_hunyuan
    pipe = HunyuanVideoPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return folder, Engine.load(spec_for(folder)), pipe


def hunyuan_layers(with_linear1: bool) -> dict[str, tuple[str, ...]]:
    """Original layers -> their diffusers modules, in the fused row order (tiny model: one block of each kind),
    written out here from diffusers' converter rather than taken from videogen's table."""
    d, s = "transformer_blocks.0.attn.", "single_transformer_blocks.0."
    layers = {"double_blocks.0.img_attn_qkv": (f"{d}to_q", f"{d}to_k", f"{d}to_v"),
              "double_blocks.0.txt_attn_qkv": (f"{d}add_q_proj", f"{d}add_k_proj", f"{d}add_v_proj")}
    if with_linear1:
        layers["single_blocks.0.linear1"] = (f"{s}attn.to_q", f"{s}attn.to_k", f"{s}attn.to_v", f"{s}proj_mlp")
    layers.update({"double_blocks.0.img_attn_proj": ("transformer_blocks.0.attn.to_out.0",),
                   "double_blocks.0.txt_mlp.fc2": ("transformer_blocks.0.ff_context.net.2",),
                   "double_blocks.0.img_mlp.fc1": ("transformer_blocks.0.ff.net.0.proj",),
                   "single_blocks.0.linear2": ("single_transformer_blocks.0.proj_out",)})
    return layers


def test_hunyuan_original_format_matches_diffusers(hunyuan, tmp_path):
    """Tencent's / ComfyUI's names (`diffusion_model.double_blocks.0.img_attn_qkv.lora_A`), which diffusers
    converts itself: its fused q/k/v split three ways."""
    folder, engine, pipe = hunyuan
    lora = Lora(model_shapes(folder), hunyuan_layers(with_linear1=False), seed=1, alpha=None)
    path = lora.write_original(tmp_path / "original.safetensors", "diffusion_model.")
    result = engine.render(spec_for(folder, f"{path}:0.8"))
    ref = diffusers_frames(pipe, [(path, 0.8)], "hunyuan")
    plain = engine.render(spec_for(folder)).frames_float
    assert float((result.frames_float - plain).abs().max()) > 100 * TOL  # the LoRA changes the frames
    assert float((result.frames_float - ref).abs().max()) <= TOL
    entry = result.record["loras"][0]
    assert (entry["modules"], entry["unmatched"], entry["converter"]) == (10, 0, "diffusers")


@pytest.mark.parametrize("fmt", ["original", "musubi"])
def test_hunyuan_fused_layers_diffusers_cannot_split_equal_their_diffusers_conversion(hunyuan, tmp_path, fmt):
    """The single blocks' fused `linear1` (q, k, v, MLP): diffusers' converter splits it at the full model's
    width (3072) and raises on any other; musubi's `lora_unet_*` names with lora_down/up and alpha it does not
    take. Both equal the same LoRA written in diffusers' format by hand and loaded by diffusers."""
    folder, engine, pipe = hunyuan
    lora = Lora(model_shapes(folder), hunyuan_layers(with_linear1=True), seed=2,
                alpha=None if fmt == "original" else 1.0)
    if fmt == "original":
        path = lora.write_original(tmp_path / "fused.safetensors", "diffusion_model.")
    else:
        path = lora.write_original(tmp_path / "fused.safetensors", "lora_unet_", ("lora_down", "lora_up"), True)
    twin = lora.write_diffusers(tmp_path / "twin.safetensors")
    result = engine.render(spec_for(folder, f"{path}:-0.6"))
    entry = result.record["loras"][0]
    assert entry["modules"] == 14 and entry["unmatched"] == 0
    assert entry["converter"].startswith("videogen")
    ref = diffusers_frames(pipe, [(twin, -0.6)], "hunyuan")
    assert float((result.frames_float - ref).abs().max()) <= TOL


# --- LTX-Video ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ltx(tiny_ltx):
    from diffusers import LTXPipeline

    folder = tiny_ltx
    pipe = LTXPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return folder, Engine.load(spec_for(folder)), pipe


LTX_BLOCK = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_out.0",
             "ff.net.0.proj", "ff.net.2")


def test_ltx_comfyui_format_matches_diffusers(ltx, tmp_path):
    """ComfyUI's `diffusion_model.transformer_blocks.N.*` keys, which LTXVideoLoraLoaderMixin loads."""
    folder, engine, pipe = ltx
    shapes = model_shapes(folder)
    blocks = sorted({int(k.split(".")[1]) for k in shapes if k.startswith("transformer_blocks.")})
    lora = Lora(shapes, {f"transformer_blocks.{b}.{m}": (f"transformer_blocks.{b}.{m}",) for b in blocks
                         for m in LTX_BLOCK}, seed=3, alpha=None)
    path = lora.write_original(tmp_path / "comfy.safetensors", "diffusion_model.")
    result = engine.render(spec_for(folder, f"{path}:0.9"))
    plain = engine.render(spec_for(folder)).frames_float
    ref = diffusers_frames(pipe, [(path, 0.9)], "ltx")
    assert float((result.frames_float - plain).abs().max()) > 100 * TOL
    assert float((result.frames_float - ref).abs().max()) <= TOL
    assert result.record["loras"][0]["modules"] == len(blocks) * len(LTX_BLOCK)


def test_ltx_original_names_equal_their_diffusers_conversion(ltx, tmp_path):
    """The original checkpoint's renamed layers (`patchify_proj`, `adaln_single.*`): diffusers' converter only
    strips the prefix and cannot place them; videogen maps them, and equals the diffusers-format twin."""
    folder, engine, pipe = ltx
    shapes = model_shapes(folder)
    layers = {"patchify_proj": ("proj_in",), "adaln_single.linear": ("time_embed.linear",),
              "transformer_blocks.0.attn1.to_v": ("transformer_blocks.0.attn1.to_v",)}
    lora = Lora(shapes, layers, seed=4, alpha=None)
    path = lora.write_original(tmp_path / "original.safetensors", "diffusion_model.")
    twin = lora.write_diffusers(tmp_path / "twin.safetensors")
    result = engine.render(spec_for(folder, str(path)))
    assert result.record["loras"][0]["modules"] == 3 and result.record["loras"][0]["unmatched"] == 0
    ref = diffusers_frames(pipe, [(twin, 1.0)], "ltx")
    assert float((result.frames_float - ref).abs().max()) <= TOL


# --- families without a LoRA loader ------------------------------------------------------------------------------


def test_each_family_declares_whether_diffusers_loads_loras_for_its_pipelines():
    """What the refusal below rests on: a family's `loras` says whether every pipeline it drives has diffusers'
    LoRA loader (diffusers 0.42 gives HunyuanVideo 1.5 none); a new diffusers that changes that fails here."""
    import diffusers

    from videogen.families import FAMILIES

    for family in FAMILIES:
        loaders = {p: hasattr(getattr(diffusers, p), "load_lora_weights") for p in family.pipelines}
        assert set(loaders.values()) == {family.loras}, (family.__name__, loaders)
    assert {f.title for f in FAMILIES if not f.loras} == {"HunyuanVideo 1.5"}


def test_a_family_without_a_lora_loader_is_refused_before_loading(tiny_wan, tmp_path):
    """`--lora` on a HunyuanVideo 1.5 folder (a user's command, in a subprocess) is refused in one line naming the
    family, before loading: the folder's weight files hold none of the model's tensors."""
    from cli_helpers import one_error_line, run_cli, user_env
    from tiny import without_weights
    from tiny_hunyuan15 import save_tiny_hunyuan15
    from tiny_lora import random_lora, write_comfy

    folder = without_weights(save_tiny_hunyuan15(tmp_path / "h15-full"), tmp_path / "h15")
    lora = write_comfy(random_lora(tiny_wan, seed=1), tmp_path / "style.safetensors")
    r = run_cli("generate", PROMPT, "-m", folder, "--frames", "5", "--height", "32", "--width", "32",
                "--lora", lora, "-o", tmp_path / "out.mp4", env=user_env(tmp_path))
    assert one_error_line(r) == ("error: --lora: diffusers has no LoRA loader for HunyuanVideo 1.5 "
                                 "(HunyuanVideo15Pipeline), so videogen takes no LoRA for this model")
    assert not (tmp_path / "out.mp4").exists()
