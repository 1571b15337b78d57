"""`--lora ORG/NAME[/FILE]`: LoRAs named by their Hugging Face Hub repo, refused as a user meets it: `videogen` as a
subprocess configured only by HF_HOME / HF_HUB_OFFLINE / HOME / XDG_CONFIG_HOME, over a Hub cache laid out as
huggingface_hub lays it out (tests/hub_cache.py). The whole path with renders, `videogen download` and `--from`
is test_lora_cli.py's stacked-LoRA test."""

from __future__ import annotations

from pathlib import Path

import pytest
from hub_cache import COMMIT, lay_out
from test_hub_cache import one_error_line, videogen
from tiny_lora import random_lora, write_comfy, write_musubi

from videogen.lora.refs import hub_id_of, parse_ref

SIZE = ["--frames", "5", "--height", "16", "--width", "16", "--steps", "2", "--seed", "4",
        "--max-sequence-length", "16"]


@pytest.fixture(scope="module")
def repos(tiny_wan, tmp_path_factory) -> dict[str, Path]:
    """Two LoRA repos as folders: org/style (one .safetensors file and a README), org/pack (two files)."""
    root = tmp_path_factory.mktemp("lora-repos")
    style, pack = root / "style", root / "pack"
    style.mkdir()
    pack.mkdir()
    write_comfy(random_lora(tiny_wan, seed=1), style / "style.safetensors")
    (style / "README.md").write_text("# a style LoRA\n")
    write_comfy(random_lora(tiny_wan, seed=2), pack / "a.safetensors")
    write_musubi(random_lora(tiny_wan, seed=3, modules=["blocks.0.attn1.to_q", "blocks.1.ffn.net.2"]),
                 pack / "b.safetensors")
    return {"org/style": style, "org/pack": pack}


def user_env(root: Path, **extra: str) -> dict[str, str]:
    """Only what a user's shell sets: no variable of the test process leaks in."""
    home = root / "home"
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "HF_HOME": str(root / "hf"), "HF_HUB_OFFLINE": "1", **extra}


def run_cli(*args, env: dict[str, str], cwd: Path):
    r = videogen(*args, env=env, cwd=cwd)
    r.code, r.out, r.err = r.returncode, r.stdout, r.stderr
    return r


@pytest.fixture
def cached(repos, tmp_path) -> dict[str, str]:
    """A user's environment whose offline Hub cache holds both repos."""
    env = user_env(tmp_path)
    for repo_id, folder in repos.items():
        lay_out(folder, Path(env["HF_HOME"]), repo_id)
    return env


def test_hub_loras_refused_in_one_line_before_loading(tiny_wan, cached, tmp_path):
    cases = [("org/pack", "LoRA 'org/pack': the cached snapshot 0123456789ab holds 2 .safetensors files "
                          "(a.safetensors, b.safetensors); name one, e.g. org/pack/a.safetensors"),
             ("org/pack/c.safetensors:0.5", "no such file in org/pack (the cached snapshot 0123456789ab holds: "
                                            "a.safetensors, b.safetensors)"),
             ("org/absent:0.5@both", "LoRA 'org/absent' is not in the Hugging Face cache ("),
             ("org/absent", "and HF_HUB_OFFLINE is set; run `videogen download org/absent` on a machine with network"),
             ("org/style/README.md", "only .safetensors LoRA files are loaded")]
    for lora, message in cases:
        r = run_cli("generate", "a cat", "-m", tiny_wan, *SIZE, "--lora", lora, "-o", tmp_path / "o.mp4",
                    env=cached, cwd=tmp_path)
        line = one_error_line(r)
        assert message in line and line.startswith("error: --lora: "), (lora, line)
        assert not (tmp_path / "o.mp4").exists()
    # A snapshot link whose blob is gone: named, with what to run.
    blobs = Path(cached["HF_HOME"]) / "hub" / "models--org--pack" / "blobs"
    link = blobs.parent / "snapshots" / COMMIT / "a.safetensors"
    link.resolve().unlink()
    r = run_cli("generate", "a cat", "-m", tiny_wan, *SIZE, "--lora", "org/pack/a.safetensors", "-o",
                tmp_path / "o.mp4", env=cached, cwd=tmp_path)
    assert f"LoRA {link}: a link to a missing blob; run `videogen download org/pack/a.safetensors`" in \
        one_error_line(r)


def test_a_path_that_exists_wins_over_a_hub_id(repos, tmp_path, monkeypatch):
    assert hub_id_of("org/name") == ("org/name", None, None)
    assert hub_id_of("org/name/sub/f.safetensors") == ("org/name", "sub/f.safetensors", None)
    assert hub_id_of("org/name@v2") == ("org/name", None, "v2")
    assert hub_id_of("org/name@0123abc/sub/f.safetensors") == ("org/name", "sub/f.safetensors", "0123abc")
    for path_only in ("style.safetensors", "loras/style.safetensors", "./org/name", "/abs/org/name", "~/a/b",
                      "a@b.safetensors", "org@v2/name", "org/name@", "org/name@a@b", "org/name/f@v2.safetensors"):
        assert hub_id_of(path_only) is None, path_only
    ref = parse_ref("org/name@v2/f.safetensors:0.5@high", "--lora", resolve=False)
    assert (ref.hub_id, ref.file, ref.asked, ref.weight, ref.expert) == ("org/name", "f.safetensors", "v2", 0.5, "high")
    assert ref.canonical() == "org/name@v2/f.safetensors:0.5@high"
    assert parse_ref("org/name@v2:-1", "--lora", resolve=False).canonical() == "org/name@v2:-1@both"
    local = tmp_path / "org" / "pack" / "b.safetensors"
    local.parent.mkdir(parents=True)
    local.write_bytes((repos["org/style"] / "style.safetensors").read_bytes())
    monkeypatch.chdir(tmp_path)
    ref = parse_ref("org/pack/b.safetensors:0.5", "--lora")  # no Hub lookup: the file is here
    assert (ref.path, ref.hub_id, ref.weight) == (local, None, 0.5)
    assert ref.canonical() == f"{local}:0.5@both"



def test_reading_a_preset_with_a_hub_lora_does_not_look_it_up(tmp_path):
    """`presets list` and batch files read `loras:` without reaching the Hub or its cache; a render resolves
    the ids when it merges its settings (the refusals above)."""
    from videogen.presets import load_preset

    preset = tmp_path / "styled.yaml"
    preset.write_text("model: org/model\nloras: [org/nowhere-to-be-found:0.5@both, org/pack/b.safetensors]\n")
    assert load_preset(str(preset)).values["loras"] == ("org/nowhere-to-be-found:0.5@both",
                                                        "org/pack/b.safetensors:1@both")
