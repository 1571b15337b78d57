"""The second-generation built-in model's recipe: its world and oracle, the LTX-Video folder it exports, parity with
diffusers' LTX pipelines on that folder (text- and image-to-video), and the command line."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import one_error_line, run_cli
from safetensors.torch import load_file

from videogen.engine import Engine
from videogen.mini import oracle2, train2, world
from videogen.spec import RenderSpec
from videogen.video import read_frames


def test_oracle_reads_the_worlds_own_clips_right():
    """Every attribute of 40 random scenes (one or two objects, every action, 17 to 41 frames) read right."""
    rng = np.random.default_rng(3)
    wrong = collections.Counter()
    for _ in range(40):
        scene = world.random_scene(rng, world.all_triples())
        video, _ = world.render(scene, int(rng.choice([17, 25, 33, 41])), rng)
        wrong.update(k for k, ok in oracle2.score(scene, oracle2.read(video)).items() if not ok)
    assert not wrong, wrong


def test_oracle_tells_a_wrong_clip_from_a_right_one():
    """The same scene with one attribute changed is scored wrong on that attribute and right on the others."""
    rng = np.random.default_rng(4)
    asked = world.Scene((world.Thing("red", "circle", "left", "small", "quickly"),
                         world.Thing("blue", "square", "growing")), "black")
    for changed, attribute in [
        (world.Scene((world.Thing("red", "triangle", "left", "small", "quickly"), asked.things[1]), "black"), "shape"),
        (world.Scene((world.Thing("red", "circle", "right", "small", "quickly"), asked.things[1]), "black"), "action"),
        (world.Scene((world.Thing("red", "circle", "left", "big", "quickly"), asked.things[1]), "black"), "size"),
        (world.Scene((world.Thing("red", "circle", "left", "small", "slowly"), asked.things[1]), "black"), "speed"),
        (world.Scene((asked.things[0], world.Thing("blue", "square", "shrinking")), "black"), "action"),
        (world.Scene((asked.things[0],), "black"), "count"),
        (world.Scene(asked.things, "gray"), "background"),
    ]:
        video, _ = world.render(changed, 33, rng)
        scores = oracle2.score(asked, oracle2.read(video))
        assert not scores[attribute], (changed.caption(), scores)
        if attribute != "count":  # a missing object is wrong in every way
            assert sum(not ok for ok in scores.values()) <= 2, (changed.caption(), scores)


def test_oracle_reads_a_soft_edged_object_as_one_object():
    """A decoded object's rim blends its colour with the background's: yellow on black gives a green rim, which
    the oracle must not read as a second object (nor as part of a real green one)."""
    scene = world.Scene((world.Thing("yellow", "square", "right", "medium", "normally"),), "black")
    video, _ = world.render(scene, 33, np.random.default_rng(3))
    inside = (video != 0).any(-1)
    grown = inside.copy()
    for axis, shift in ((1, 1), (1, -1), (2, 1), (2, -1)):
        grown |= np.roll(inside, shift, axis)
    rim = (grown | np.roll(grown, 1, 1) | np.roll(grown, 1, 2)) & ~inside  # two pixels wide on two sides
    soft = video.copy()
    soft[rim] = (0.5 * np.array(world.COLOURS["yellow"])).astype(np.uint8)  # nearest palette colour: green
    assert oracle2.read(soft)[1][0].colour == "yellow"
    assert all(oracle2.score(scene, oracle2.read(soft)).values()), oracle2.read(soft)


def test_held_out_triples_never_reach_training_scenes():
    train, held = world.split_triples()
    assert len(held) == world.HELDOUT_COUNT and not set(train) & set(held)
    rng = np.random.default_rng(0)
    for _ in range(200):
        assert all(t.triple in set(train) for t in world.random_scene(rng, train).things)
        assert any(t.triple in set(held) for t in world.random_scene(rng, train, must=held).things)


def test_captions_follow_the_grammar():
    scene = world.Scene((world.Thing("orange", "circle", "up", "big", "slowly"),
                         world.Thing("red", "square", "shrinking")), "white")
    assert scene.caption() == "a big orange circle moving up slowly and a red square shrinking on a white background"
    assert world.Scene((world.Thing("orange", "triangle", "left"),), "gray").caption() == \
        "an orange triangle moving left on a gray background"


def test_long_fast_big_objects_stay_whole_in_the_frame():
    """The longest clips slow a big, quick object down to the frame's room; rounding must not make the room
    negative (it once stopped the transformer's training while it filled its pool of 41-frame clips)."""
    for seed in range(120):
        rng = np.random.default_rng(seed)
        for action in world.DIRECTIONS:
            tr = world.track(world.Thing("red", "square", action, "big", "quickly"), 41, rng)
            assert np.all(tr.cx - tr.r >= -1e-3) and np.all(tr.cx + tr.r <= world.SIZE + 1e-3)
            assert np.all(tr.cy - tr.r >= -1e-3) and np.all(tr.cy + tr.r <= world.SIZE + 1e-3)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """The recipe's own export (videogen.mini.train2.export) of freshly initialised parts: the folder layout the
    trained model ships in, loaded below through the engine's LTX-Video adapter and diffusers' pipelines."""
    work = tmp_path_factory.mktemp("mini2")
    torch.manual_seed(0)
    vae = train2.new_vae()
    torch.save(vae.state_dict(), work / "vae.pt")
    torch.save(train2.new_vae().state_dict(), work / f"{train2.DECODER_PHASE.name}.pt")  # other random weights
    torch.save((torch.zeros(1, 64, 1, 1, 1), torch.full((1, 64, 1, 1, 1), 0.5)), work / "latent_stats.pt")
    te, tr = train2.new_text_encoder(len(train2.build_tokenizer())), train2.new_transformer()
    torch.save({"ema": {"te": te.state_dict(), "tr": tr.state_dict()}, "step": 0}, work / "transformer.pt")
    train2.export(work, work / "model")
    return work / "model"


def test_exported_folder_is_a_small_safetensors_ltx_video_model(folder):
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "LTXPipeline"
    assert index["vae"] == ["diffusers", "AutoencoderKLLTXVideo"]
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert {p.parent.name for p in files if p.suffix == ".safetensors"} == {"transformer", "vae", "text_encoder"}
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
    assert sum(p.stat().st_size for p in files) <= 50 * 2**20
    vae = json.loads((folder / "vae" / "config.json").read_text())
    assert vae["patch_size"] * 2 ** sum(vae["spatio_temporal_scaling"]) >= 16  # 16x or more in space
    assert 2 ** sum(vae["spatio_temporal_scaling"]) >= 4  # and 4x or more in time
    # the encoder the transformer learned the latents of, the decoder of the last (decoder-only) stage
    shipped = load_file(folder / "vae" / "diffusion_pytorch_model.safetensors")
    for name, stage in (("encoder.", "vae.pt"), ("decoder.", f"{train2.DECODER_PHASE.name}.pt")):
        trained = torch.load(folder.parent / stage)
        assert all(torch.equal(shipped[k], v.half()) for k, v in trained.items() if k.startswith(name))


@pytest.fixture(scope="module")
def engine(folder) -> Engine:
    return Engine.load(RenderSpec(prompt="x", model=str(folder)))


def reference(folder, prompt: str, image, seed: int, steps: int, guidance: float, frames: int) -> torch.Tensor:
    from diffusers import LTXImageToVideoPipeline, LTXPipeline

    cls = LTXImageToVideoPipeline if image is not None else LTXPipeline
    pipe = cls.from_pretrained(folder, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    defaults = json.loads((folder / "videogen_defaults.json").read_text())
    kwargs = {"image": image} if image is not None else {}
    out = pipe(prompt=prompt, negative_prompt="", num_frames=frames, height=128, width=128,
               num_inference_steps=steps, guidance_scale=guidance, frame_rate=defaults["fps"],
               max_sequence_length=defaults["max_sequence_length"], generator=torch.Generator().manual_seed(seed),
               output_type="pt", **kwargs).frames[0]
    return out.permute(0, 2, 3, 1)


@pytest.mark.parametrize("task", ["t2v", "i2v"])
def test_engine_matches_diffusers_ltx_pipelines(engine, folder, task, tmp_path):
    from PIL import Image

    from videogen.cli.options import merge

    prompt = "a small red circle moving left quickly and a blue square growing on a black background"
    image = None
    settings = {"model": str(folder), "seed": 5, "steps": 3, "guidance": 3.0, "frames": 17}
    if task == "i2v":
        scene = world.Scene((world.Thing("green", "triangle", "up"),), "gray")
        video, _ = world.render(scene, 17, np.random.default_rng(0))
        image = tmp_path / "first.png"
        Image.fromarray(video[0]).save(image)
        settings["image"] = str(image)
    ours = engine.render(merge(prompt, settings, None)).frames_float
    theirs = reference(folder, prompt, Image.open(image).convert("RGB") if image else None, 5, 3, 3.0, 17)
    assert ours.shape == theirs.shape == (17, 128, 128, 3)
    assert theirs.std() > 0.02, "the reference clip is flat: the comparison would prove nothing"
    assert (ours - theirs).abs().max() <= 1 / 255


def test_training_calls_the_transformer_as_the_pipeline_renders(folder):
    """The training loss gives the transformer the positions (RoPE scale), token grid and token width that
    LTXPipeline gives it at render time: a model trained at other positions renders backgrounds without objects."""
    from diffusers import LTXPipeline

    seen: dict[str, dict] = {}

    def grab(name: str):
        def hook(_module, _args, kwargs):
            keys = ("rope_interpolation_scale", "num_frames", "height", "width")
            seen[name] = {k: kwargs[k] for k in keys} | {"width_of_a_token": kwargs["hidden_states"].shape[-1]}
        return hook

    defaults = json.loads((folder / "videogen_defaults.json").read_text())
    pipe = LTXPipeline.from_pretrained(folder, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    handle = pipe.transformer.register_forward_pre_hook(grab("render"), with_kwargs=True)
    pipe(prompt="a red circle moving left on a black background", num_frames=33, height=128, width=128,
         num_inference_steps=1, guidance_scale=1.0, frame_rate=defaults["fps"],
         max_sequence_length=defaults["max_sequence_length"], output_type="latent")
    handle.remove()
    pipe.transformer.register_forward_pre_hook(grab("train"), with_kwargs=True)
    states, mask = train2.encode_text(pipe.tokenizer, pipe.text_encoder, ["a red circle moving left"] * 2)
    x0 = torch.randn(2, 64, (33 - 1) // 4 + 1, 128 // 16, 128 // 16)
    with torch.no_grad():
        train2.flow_loss(pipe.transformer, x0, states, mask, np.random.default_rng(0),
                         train2.rope_scale(pipe.vae, defaults["fps"]))
    assert seen["train"] == seen["render"]


def test_the_folders_defaults_apply_and_unknown_builtins_are_refused(folder, tmp_path):
    import videogen

    result = videogen.generate("a big yellow square moving right on a gray background", tmp_path / "v2.mp4",
                               model=str(folder), seed=1, steps=2)
    frames, fps = read_frames(result.output)
    assert frames.shape == (33, 128, 128, 3) and fps == 8  # videogen_defaults.json of the export
    assert result.record["family"] == "ltx" and result.record["spec"]["max_sequence_length"] == train2.TEXT_LEN
    bad = run_cli("generate", "a red circle", "-m", "builtin:mini-v9", "-o", tmp_path / "no.mp4")
    assert "builtin:mini-v9" in one_error_line(bad) and "builtin:mini-v1" in bad.err
    assert not (tmp_path / "no.mp4").exists()
