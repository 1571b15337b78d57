"""LoRAs and exact schedules the way a user walks them: `videogen generate` / `batch` as subprocesses."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli, run_inprocess
from hub_cache import lay_out
from hub_server import COMMIT as HUB_COMMIT
from hub_server import Hub, serve
from PIL import Image
from test_hub_cache import one_error_line, videogen
from tiny_lora import random_lora, write_comfy, write_musubi

SIZE = ["--frames", "5", "--height", "16", "--width", "16", "--seed", "4", "--max-sequence-length", "16"]
LIGHTX2V_SIGMAS = [1.0, 0.9375, 0.833333, 0.625, 0.0]  # 5s / (1 + 4s) for s = 1, 0.75, 0.5, 0.25; then 0
NEW_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture
def env(tmp_path):
    return {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}


def hub_env(root: Path) -> dict[str, str]:
    """Only what a user's shell sets (PATH to find nothing but the system's tools): nothing of the test process."""
    home = root / "home"
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "HF_HOME": str(root / "hf"), "HF_HUB_OFFLINE": "1"}


def frames(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_stacked_loras_from_the_hub_with_the_lightx2v_preset_record_and_from(tiny_wan, tmp_path):
    """The user's whole path with two stacked LoRAs named by Hub id, against a Hub on 127.0.0.1
    (tests/hub_server.py) with huggingface_hub's own client, in an environment of HF_HOME, HF_HUB_OFFLINE, HOME and
    XDG_CONFIG_HOME only: `videogen download` of one LoRA file, an online render that fetches the other, an
    offline `--from` from another folder, which still renders the recorded commits once the repo's main names a
    changed file, and the refusal of a recorded file whose cached copy changed."""
    a, b = tmp_path / "style" / "style.safetensors", tmp_path / "pack" / "b.safetensors"
    a.parent.mkdir()
    b.parent.mkdir()
    write_comfy(random_lora(tiny_wan, seed=1), a)
    (a.parent / "README.md").write_text("# a style LoRA\n")
    write_comfy(random_lora(tiny_wan, seed=2), b.parent / "a.safetensors")
    write_musubi(random_lora(tiny_wan, seed=2, modules=["blocks.0.attn1.to_q", "blocks.1.ffn.net.2"]), b)
    hub = Hub()
    hub.add("org/style", a.parent)
    hub.add("org/pack", b.parent)
    server = serve(hub)
    offline = hub_env(tmp_path)
    online = {k: v for k, v in offline.items() if k != "HF_HUB_OFFLINE"} | {"HF_ENDPOINT": hub.url}
    snaps = tmp_path / "hf" / "hub"
    try:
        line = one_error_line(videogen("download", "org/pack", env=online, cwd=tmp_path))
        assert "the repo holds 2 .safetensors files (a.safetensors, b.safetensors); name one" in line
        r = videogen("download", "org/pack/b.safetensors", "-q", env=online, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"{snaps / 'models--org--pack' / 'snapshots' / HUB_COMMIT / 'b.safetensors'}\n"
        assert sorted(p.name for p in Path(r.stdout.strip()).parent.iterdir()) == ["b.safetensors"]

        out = tmp_path / "stacked"  # org/style is not cached yet: the render fetches its one .safetensors file
        r = videogen("generate", "a red cat runs on the beach", "-p", "wan2.1-t2v-14b-lightx2v-4step", "-m",
                     tiny_wan, *SIZE, "--lora", "org/style:0.8", "--lora", "org/pack/b.safetensors:-0.5", "-o", out,
                     "--json", "-q", env=online, cwd=tmp_path)
    finally:
        server.shutdown()
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    style_file = snaps / "models--org--style" / "snapshots" / HUB_COMMIT / "style.safetensors"
    assert [(e["path"], e["hub_id"], e["file"], e["revision"], e["sha256"], e["weight"], e["expert"], e["modules"])
            for e in record["loras"]] == [
        (str(style_file), "org/style", "style.safetensors", HUB_COMMIT, sha(a), 0.8, "both", 20),
        (str(snaps / "models--org--pack" / "snapshots" / HUB_COMMIT / "b.safetensors"), "org/pack", "b.safetensors",
         HUB_COMMIT, sha(b), -0.5, "both", 2)]
    assert record["spec"]["loras"] == ["org/style/style.safetensors:0.8@both", "org/pack/b.safetensors:-0.5@both"]
    assert not (style_file.parent / "README.md").exists()  # a LoRA fetch takes the LoRA file only
    assert record["steps"] == 4 and record["guidance"] == 1.0
    assert record["sampling"]["sigmas"] == pytest.approx(LIGHTX2V_SIGMAS, abs=1e-6)
    assert record["scheduler"]["class"] == "FlowMatchEulerDiscreteScheduler"
    assert json.loads((out / "run.json").read_text())["loras"] == record["loras"]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    changed = tmp_path / "style-v2"  # the repo moves on: main names a commit whose file differs
    changed.mkdir()
    write_comfy(random_lora(tiny_wan, seed=9), changed / "style.safetensors")
    lay_out(changed, tmp_path / "hf", "org/style", commit=NEW_COMMIT)
    moved = tmp_path / "moved"  # --from, offline, renders the commits the record used from the cache
    r = videogen("generate", "--from", out / "run.json", "-o", moved, "--json", "-q", env=offline, cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    assert np.array_equal(frames(moved), frames(out))
    rerun = json.loads(r.stdout)
    assert [(e["revision"], e["sha256"]) for e in rerun["loras"]] == [(HUB_COMMIT, sha(a)), (HUB_COMMIT, sha(b))]
    assert rerun["spec"]["loras"] == [f"org/style@{HUB_COMMIT}/style.safetensors:0.8@both",
                                      f"org/pack@{HUB_COMMIT}/b.safetensors:-0.5@both"]
    # A recorded commit whose cached file no longer holds what the record says is refused, naming both hashes.
    blob = (snaps / "models--org--style" / "snapshots" / HUB_COMMIT / "style.safetensors").resolve()
    blob.write_bytes(blob.read_bytes()[:-4] + b"\0\0\0\0")
    line = one_error_line(videogen("generate", "--from", out / "run.json", "-o", tmp_path / "bad", "-q",
                                   env=offline, cwd=tmp_path))
    assert f"LoRA file org/style/style.safetensors at commit {HUB_COMMIT[:12]} changed since that run (sha256 " \
           f"{sha(a)[:12]}... recorded, {sha(blob)[:12]}... now)" in line
    assert not (tmp_path / "bad").exists()


def test_a_hub_lora_at_a_branch_tag_or_commit(tiny_wan, tmp_path):
    """`--lora ORG/NAME@REV`: a Hub on 127.0.0.1 whose org/style has main and a tag v2 on another commit;
    `videogen download org/style@v2` fetches the tag's file and names the tag in the cache; an offline render at
    @v2 reads that file; a revision the Hub or the cache does not have is refused in one line before loading."""
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    v1.mkdir()
    v2.mkdir()
    write_comfy(random_lora(tiny_wan, seed=1), v1 / "style.safetensors")
    write_comfy(random_lora(tiny_wan, seed=5), v2 / "style.safetensors")
    hub = Hub()
    hub.add("org/style", v1)
    hub.add_revision("org/style", v2, NEW_COMMIT, refs=("v2",))
    server = serve(hub)
    offline = hub_env(tmp_path)
    online = {k: v for k, v in offline.items() if k != "HF_HUB_OFFLINE"} | {"HF_ENDPOINT": hub.url}
    repo = tmp_path / "hf" / "hub" / "models--org--style"
    try:
        r = videogen("download", "org/style@v2", "-q", env=online, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"{repo / 'snapshots' / NEW_COMMIT / 'style.safetensors'}\n"
        assert (repo / "refs" / "v2").read_text() == NEW_COMMIT and not (repo / "refs" / "main").exists()
        line = one_error_line(videogen("generate", "a cat", "-m", tiny_wan, *SIZE, "--lora", "org/style@v3:0.8",
                                       "-o", tmp_path / "no.mp4", env=online, cwd=tmp_path))
        assert "error: --lora: LoRA 'org/style@v3': no branch, tag or commit 'v3' in org/style" in line
    finally:
        server.shutdown()
    out = tmp_path / "at-v2.mp4"
    r = videogen("generate", "a cat", "-m", tiny_wan, *SIZE, "--lora", "org/style@v2:0.8", "-o", out, "--json", "-q",
                 env=offline, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    assert [(e["hub_id"], e["file"], e["revision"], e["sha256"]) for e in record["loras"]] == [
        ("org/style", "style.safetensors", NEW_COMMIT, sha(v2 / "style.safetensors"))]
    assert record["spec"]["loras"] == ["org/style@v2/style.safetensors:0.8@both"]
    for lora, messages in [
            ("org/style@v3", ("LoRA 'org/style@v3' is not in the Hugging Face cache (", "and HF_HUB_OFFLINE is set; "
                              "run `videogen download org/style --revision v3` on a machine with network")),
            (f"org/style@{HUB_COMMIT}/style.safetensors",
             (f"commit {HUB_COMMIT[:12]} is not in the Hugging Face cache",)),
            ("style.safetensors@hgih", ("unknown expert '@hgih'; use @high, @low or @both",))]:
        line = one_error_line(videogen("generate", "a cat", "-m", tiny_wan, *SIZE, "--lora", lora, "-o",
                                       tmp_path / "no.mp4", env=offline, cwd=tmp_path))
        assert all(m in line for m in messages) and line.startswith("error: --lora: "), (lora, line)
    assert not (tmp_path / "no.mp4").exists()


def test_a_changed_local_lora_is_refused_by_from(tiny_wan, tmp_path):
    """The record's local LoRA file must still be the same file (by sha256) for `--from`."""
    from videogen.errors import UserError
    from videogen.settings import merge

    path = write_comfy(random_lora(tiny_wan, seed=1), tmp_path / "style.safetensors")
    entry = {"path": str(path), "sha256": sha(path), "weight": 1.0, "expert": "both"}
    record = {"spec": {"prompt": "a cat", "model": str(tiny_wan), "loras": [f"{path}:1@both"]}, "loras": [entry]}
    assert merge(None, {}, record=record, where="r.json").loras == (f"{path}:1@both",)
    path.write_bytes(path.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(UserError, match=r"r\.json: LoRA file .*style\.safetensors changed since that run"):
        merge(None, {}, record=record, where="r.json")


def test_bad_loras_are_refused_in_one_line_before_loading(tiny_wan, tmp_path, env, capsys, monkeypatch):
    import torch
    from safetensors.torch import save_file

    other = tmp_path / "sdxl.safetensors"
    save_file({"lora_unet_mid_block_attentions_0_proj_out.lora_down.weight": torch.zeros(2, 4),
               "lora_unet_mid_block_attentions_0_proj_out.lora_up.weight": torch.zeros(4, 2)}, str(other))
    pickle = tmp_path / "style.pt"
    pickle.write_bytes(b"not loaded")
    cases = [([f"{other}:0.5"], "sdxl.safetensors: none of its 2 keys match this wan model"),
             ([str(pickle)], "only .safetensors LoRA files are loaded"),
             ([f"{other}:strong"], "weight 'strong' is not a number"),
             ([f"{other}@mid"], "unknown expert '@mid'"),
             ([str(tmp_path / "missing.safetensors")], "LoRA file not found")]
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for i, (loras, message) in enumerate(cases):
        args = [x for lo in loras for x in ("--lora", lo)]
        run = run_cli if i == 0 else lambda *a, env: run_inprocess(capsys, *a)  # the real process once
        r = run("generate", "a cat", "-m", tiny_wan, *SIZE, *args, "-o", tmp_path / "out.mp4", env=env)
        assert r.code == 2, (loras, r.err)
        assert message in r.err and len(r.err.strip().splitlines()) == 1, r.err
        assert "Traceback" not in r.err and not (tmp_path / "out.mp4").exists()


def test_sigmas_flag_errors(tiny_wan, tmp_path, capsys):
    for args, message in ((["--sigmas", "1,0.5", "--steps", "3"], "--steps 3 disagrees with the 2 sigmas given by --sigmas"),
                          (["--sigmas", "0.5,0.75"], "strictly decreasing"),
                          (["--sigmas", "1,x"], "not a comma-separated list")):
        r = run_inprocess(capsys, "generate", "a cat", "-m", tiny_wan, "--frames", "5", "--height", "16",
                          "--width", "16", *args, "-o", tmp_path / "o.mp4")
        assert r.code == 2 and message in r.err, r.err


def test_batch_items_switch_loras_on_one_engine(tiny_wan, tmp_path, env):
    a = write_comfy(random_lora(tiny_wan, seed=1), tmp_path / "a.safetensors")
    b = write_musubi(random_lora(tiny_wan, seed=3), tmp_path / "b.safetensors")
    items = [{"prompt": "a red cat", "loras": [f"{a}:1"]}, {"prompt": "a red cat", "loras": [f"{b}:0.5"]},
             {"prompt": "a red cat"}]
    file = tmp_path / "items.jsonl"
    file.write_text("".join(json.dumps(i) + "\n" for i in items))
    out = tmp_path / "out"
    r = run_cli("batch", file, "-m", tiny_wan, *SIZE, "--steps", "2", "--format", "png", "-o", out, "-q", env=env)
    assert r.code == 0, r.err
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*/run.json"))]
    assert len(records) == 3
    by_lora = {tuple(e["sha256"] for e in rec.get("loras", [])): rec for rec in records}
    assert set(by_lora) == {(sha(a),), (sha(b),), ()}
    switched = [rec for rec in records if "lora_switch" in rec["timings"]]
    assert len(switched) >= 2  # the engine was loaded once; later items switched LoRAs in place
    assert len({rec["timings"]["load"] for rec in records}) == 1


def test_relative_loras_in_a_preset_and_a_prompt_file_are_relative_to_that_file(tiny_wan, tmp_path, env):
    """A preset's and a prompt file's relative LoRA paths are found beside that file (as a preset's `model:` is),
    whatever folder the command runs from; weight and expert stay as written."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "loras").mkdir(parents=True)
    elsewhere.mkdir()
    lora = write_comfy(random_lora(tiny_wan, seed=3), project / "loras" / "style.safetensors")
    (project / "look.yaml").write_text(f"model: {tiny_wan}\nloras: [loras/style.safetensors:0.7]\n")
    r = run_cli("generate", "a red cat", "-p", project / "look.yaml", *SIZE, "--steps", "1", "-o", "a.mp4",
                cwd=elsewhere, env=env)
    assert r.code == 0, r.err
    record = json.loads((elsewhere / "a.mp4.json").read_text())
    assert record["spec"]["loras"] == [f"{lora}:0.7@both"] and record["loras"][0]["modules"] > 0
    (project / "p.jsonl").write_text(json.dumps({"prompt": "a blue dog", "loras": ["./loras/style.safetensors:0.5"]})
                                     + "\n")
    r = run_cli("batch", project / "p.jsonl", "-m", tiny_wan, *SIZE, "--steps", "1", "--dry-run", "-o", "out",
                cwd=elsewhere, env=env)
    assert r.code == 0 and "1 item(s)" in r.out, r.err
