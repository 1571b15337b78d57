"""Prompt files and presets of `videogen batch`: any input either parses or is refused with exit 2 and one line
naming the file and the line (or key); never a traceback. Plus the plan: seeds and output names."""

from __future__ import annotations

import contextlib
import json
import re
import string
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cli_helpers import run_inprocess
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from videogen import batch as b
from videogen.errors import UserError
from videogen.presets import parse_preset
from videogen.spec import RenderSpec, spec_field_types

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SUFFIXES = (".txt", ".jsonl", ".yaml")


def write(folder: Path, suffix: str, data: bytes | str) -> Path:
    path = folder / f"prompts{suffix}"
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def assert_clean_refusal(e: UserError, path: Path, *, needs_location: bool = True) -> None:
    """One line, starting with the file; naming a line number (or, for whole-file problems, the file alone)."""
    msg = str(e)
    assert "\n" not in msg and "\r" not in msg, msg
    assert msg.startswith(str(path)), msg
    if needs_location:
        rest = msg[len(str(path)):]
        assert re.match(r":\d+: ", rest) or rest.startswith(": no prompts") or "larger than" in rest, msg


def parse_or_refuse(path: Path) -> list[b.Entry] | None:
    try:
        entries = b.read_prompt_file(path)
    except UserError as e:
        assert_clean_refusal(e, path)
        return None
    for entry in entries:  # what parses is valid: a usable prompt and checked fields
        assert entry.prompt.strip() and len(entry.prompt) <= b.MAX_PROMPT_CHARS
        assert re.fullmatch(re.escape(str(path)) + r":\d+", entry.where)
        assert set(entry.fields) <= set(b.ITEM_KEYS)
    return entries


# -- property-based: random bytes, encodings, long lines, structures, aliases ----------------------------------


@FUZZ
@given(data=st.binary(max_size=400), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes_parse_or_refuse_cleanly(tmp_path, data, suffix):
    parse_or_refuse(write(tmp_path, suffix, data))


@FUZZ
@given(text=st.text(max_size=200), encoding=st.sampled_from(["utf-16", "utf-32", "latin-1", "cp1252", "utf-8"]),
       suffix=st.sampled_from(SUFFIXES))
def test_wrong_encodings(tmp_path, text, encoding, suffix):
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = text.encode("utf-8", "surrogatepass")
    parse_or_refuse(write(tmp_path, suffix, data))


def test_a_non_utf8_byte_is_named_by_line(tmp_path):
    path = write(tmp_path, ".txt", b"a red cat\n\na blue dog \xe9t\xe9\n")
    with pytest.raises(UserError, match=r"prompts\.txt:3: not UTF-8"):
        b.read_prompt_file(path)


@FUZZ
@given(n=st.integers(b.MAX_PROMPT_CHARS - 2, b.MAX_PROMPT_CHARS + 50), line=st.integers(1, 4),
       suffix=st.sampled_from(SUFFIXES))
def test_very_long_lines(tmp_path, n, line, suffix):
    prompt = "a red cat " * (n // 10) + "x" * (n % 10)
    lines = ["a blue dog"] * 4
    if suffix == ".txt":
        lines[line - 1] = prompt
    elif suffix == ".jsonl":
        lines = [json.dumps({"prompt": p}) for p in lines]
        lines[line - 1] = json.dumps({"prompt": prompt})
    else:
        lines = [f"- {p}" for p in lines]
        lines[line - 1] = f"- {prompt}"
    path = write(tmp_path, suffix, "\n".join(lines) + "\n")
    entries = parse_or_refuse(path)
    too_long = len(prompt.strip()) > b.MAX_PROMPT_CHARS
    assert (entries is None) == too_long
    if too_long:
        with pytest.raises(UserError, match=rf":{line}: the prompt is longer"):
            b.read_prompt_file(path)


scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=30))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)
field_names = st.sampled_from([*b.ITEM_KEYS, "prompt", "promt", "seeds", "Prompt", "", "output"])
items = st.one_of(st.text(max_size=40), st.dictionaries(field_names, values, max_size=4),
                  st.fixed_dictionaries({"prompt": st.text(max_size=40)},
                                        optional={k: values for k in ("seed", "steps", "guidance", "frames",
                                                                      "dtype", "vae_tiling", "model")}), values)


@FUZZ
@given(doc=st.one_of(st.lists(items, max_size=5), values))
def test_wrong_types_and_missing_fields_in_yaml(tmp_path, doc):
    try:
        text = yaml.safe_dump(doc, allow_unicode=True)
    except (yaml.YAMLError, ValueError):
        return
    parse_or_refuse(write(tmp_path, ".yaml", text))


@FUZZ
@given(lines=st.lists(st.one_of(items, st.text(max_size=30)), max_size=5), raw=st.booleans())
def test_wrong_types_and_missing_fields_in_jsonl(tmp_path, lines, raw):
    out = []
    for obj in lines:
        try:
            out.append(obj if raw and isinstance(obj, str) else json.dumps(obj, ensure_ascii=False))
        except (TypeError, ValueError):
            out.append("{")
    parse_or_refuse(write(tmp_path, ".jsonl", "\n".join(out)))


def test_type_errors_name_line_and_key(tmp_path):
    path = write(tmp_path, ".yaml", "- a red cat\n- prompt: a blue dog\n  steps: many\n")
    with pytest.raises(UserError, match=r"prompts\.yaml:3: 'steps' must be an integer"):
        b.read_prompt_file(path)
    path = write(tmp_path, ".jsonl", '{"prompt": "a red cat"}\n\n{"prompt": "x", "sead": 3}\n')
    with pytest.raises(UserError, match=r"prompts\.jsonl:3: unknown key 'sead' \(did you mean 'seed'\?\)"):
        b.read_prompt_file(path)
    path = write(tmp_path, ".jsonl", '{"prompt": "a red cat"}\n{"seed": 3}\n')
    with pytest.raises(UserError, match=r"prompts\.jsonl:2: missing 'prompt'"):
        b.read_prompt_file(path)
    path = write(tmp_path, ".yaml", "- prompt: a\n  seed: 1\n  seed: 2\n")
    with pytest.raises(UserError, match=r"prompts\.yaml:3: duplicate key 'seed'"):
        b.read_prompt_file(path)


BILLION_LAUGHS = "\n".join(["a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]"]
                           + [f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]"
                              for p, c in zip(string.ascii_lowercase[:8], string.ascii_lowercase[1:9], strict=True)])


@FUZZ
@given(depth=st.integers(1, 9), where=st.sampled_from(["item", "value", "top"]))
def test_yaml_anchors_and_aliases_are_refused(tmp_path, depth, where):
    laughs = "\n".join(BILLION_LAUGHS.splitlines()[:depth])
    if where == "top":
        text = laughs + "\n"
    elif where == "item":
        text = "- &p a red cat\n- *p\n"
    else:
        text = f"- prompt: &x a red cat\n  negative_prompt: *x\n# {laughs[:40]}\n"
    path = write(tmp_path, ".yaml", text)
    with pytest.raises(UserError) as e:
        b.read_prompt_file(path)
    assert_clean_refusal(e.value, path)
    assert "aliases" in str(e.value) or "list of items" in str(e.value)


def test_deep_nesting_is_refused_not_a_crash(tmp_path):
    for suffix, text in ((".yaml", "- " + "[" * 5000 + "]" * 5000), (".jsonl", "[" * 100_000 + "]" * 100_000)):
        path = write(tmp_path, suffix, text)
        with pytest.raises(UserError) as e:
            b.read_prompt_file(path)
        assert_clean_refusal(e.value, path)


@FUZZ
@given(data=st.one_of(st.binary(max_size=200), st.builds(lambda d: yaml.safe_dump(d).encode(), values),
                      st.builds(lambda d, k, v: yaml.safe_dump({**d, k: v}).encode(),
                                st.dictionaries(st.sampled_from(["model", "steps", "description"]), scalars),
                                st.sampled_from([*spec_field_types(), "family", "stepz"]), values)))
def test_presets_parse_or_refuse_cleanly(tmp_path, data):
    with contextlib.suppress(UserError):
        preset_parses_or_refuses(tmp_path / "fuzz.yaml", data)


def test_presets_refuse_aliases_and_deep_nesting(tmp_path):
    for data in (BILLION_LAUGHS.encode(), b"[" * 3000, b"a: " + b"{x: " * 3000):
        with pytest.raises(UserError):
            preset_parses_or_refuses(tmp_path / "fuzz.yaml", data)


def preset_parses_or_refuses(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        parse_preset(path)
    except UserError as e:
        assert_clean_refusal(e, path, needs_location=False)
        raise


# -- the plan --------------------------------------------------------------------------------------------------


def make_spec(prompt: str, fields: dict) -> RenderSpec:
    return RenderSpec(prompt=prompt, model="m", **fields)


def test_txt_comments_blank_lines_and_crlf(tmp_path):
    path = write(tmp_path, ".txt", "# header\r\n\r\n  a red cat  \r\n   # indented comment\na dog # not a comment\n")
    entries = b.read_prompt_file(path)
    assert [(e.where.rsplit(":", 1)[1], e.prompt) for e in entries] == [("3", "a red cat"),
                                                                       ("5", "a dog # not a comment")]


def test_a_json_line_in_a_txt_file_is_refused_naming_the_line(tmp_path):
    """A .txt line that is a JSON object is an item meant for a .jsonl file, not a prompt to render as words."""
    path = write(tmp_path, ".txt", 'a red cat\n{"prompt": "a dog", "seed": 3}\n')
    with pytest.raises(UserError) as e:
        b.read_prompt_file(path)
    assert str(e.value).startswith(f"{path}:2: a JSON object in a .txt file") and ".jsonl" in str(e.value)
    braces = write(tmp_path, ".txt", "{a cat} in braces\n{}x\n")  # braces alone are words of a prompt
    assert [e.prompt for e in b.read_prompt_file(braces)] == ["{a cat} in braces", "{}x"]


def test_seeds_are_deterministic_and_names_safe(tmp_path):
    entries = [b.Entry("f:1", "../../etc/passwd", {}), b.Entry("f:2", ".hidden " + "long " * 40, {}),
               b.Entry("f:3", "日本語", {}), b.Entry("f:4", "../../etc/passwd", {}),
               b.Entry("f:5", "a cat", {"seed": 7})]
    plan = b.build_plan(entries, make_spec, tmp_path)
    again = b.build_plan(entries, make_spec, tmp_path)
    assert [(i.output, i.spec.seed, i.key) for i in plan] == [(i.output, i.spec.seed, i.key) for i in again]
    assert plan[4].spec.seed == 7
    assert plan[0].spec.seed != plan[3].spec.seed  # the same prompt twice gets two seeds
    for item in plan:
        assert item.output.parent == tmp_path
        name = item.output.name
        assert "/" not in name and not name.startswith(".") and len(name) < 80
        assert name.endswith(f"-s{item.spec.seed}-{item.key[:10]}.mp4")  # by content, no position in it
    # a seed does not depend on the lines around it, nor does a name
    shifted = b.build_plan([b.Entry("f:0", "another", {}), *entries], make_spec, tmp_path)
    assert shifted[1].spec.seed == plan[0].spec.seed
    assert [i.output for i in shifted[1:]] == [i.output for i in plan]


def test_item_key_ignores_fields_at_their_default():
    """A field a later version adds (at its default) leaves the keys, so the names, of finished items as they were."""
    spec = RenderSpec(prompt="a cat", model="m", seed=1)
    assert b.item_key(spec) == b.item_key(spec.replace(crf=18, negative_prompt=None))
    assert b.item_key(spec) != b.item_key(spec.replace(crf=20)) != b.item_key(spec.replace(seed=2))


def test_identical_items_are_one_item(tmp_path):
    """Lines asking for exactly the same render (prompt, settings, seed) are planned once, with every line noted."""
    entries = [b.Entry("f:1", "a cat", {"seed": 1}), b.Entry("f:2", "a dog", {}), b.Entry("f:3", "a cat", {"seed": 1}),
               b.Entry("f:4", "a cat", {"seed": 1, "steps": 3})]
    plan = b.build_plan(entries, make_spec, tmp_path)
    assert [(i.index, i.where, i.also) for i in plan] == [(0, "f:1", ("f:3",)), (1, "f:2", ()), (2, "f:4", ())]
    assert len({i.output for i in plan}) == 3


def test_seed_options(tmp_path):
    entries = [b.Entry("f:1", "a", {}), b.Entry("f:2", "b", {"seed": 5})]
    plan = b.build_plan(entries, make_spec, tmp_path, seeds=b.parse_seeds("3..5"))
    assert [(i.spec.prompt, i.spec.seed) for i in plan] == [("a", 3), ("a", 4), ("a", 5), ("b", 5)]
    plan = b.build_plan(entries, make_spec, tmp_path, per_prompt=3)
    assert len({i.spec.seed for i in plan[:3]}) == 3 and plan[3].spec.seed == 5
    assert plan[0].spec.seed == b.build_plan(entries, make_spec, tmp_path)[0].spec.seed
    for bad in ("5..3", "x", "1..99999", "-1"):
        with pytest.raises(UserError, match="--seeds"):
            b.parse_seeds(bad)


def test_items_are_split_by_index_modulo_world(tmp_path):
    plan = b.build_plan([b.Entry(f"f:{i}", f"p{i}", {}) for i in range(7)], make_spec, tmp_path)
    shares = [b.Ranks(rank=r, world=3).mine(plan) for r in range(3)]
    assert [[i.index for i in s] for s in shares] == [[0, 3, 6], [1, 4], [2, 5]]


# -- through the real command: exit 2 and one line ----------------------------------------------------------------


def run_main(capsys, *args) -> tuple[int, str, str]:
    res = run_inprocess(capsys, *args)
    return res.code, res.out, res.err


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=100), st.just(b"- prompt: [1]\n"), st.just(b'{"prompt": 3}')),
       suffix=st.sampled_from(SUFFIXES))
def test_command_refuses_with_exit_2_and_one_line(tiny_wan, tmp_path, capsys, data, suffix):
    path = write(tmp_path, suffix, data)
    code, out, err = run_main(capsys, "batch", path, "--dry-run", "-o", tmp_path / "out", "-m", tiny_wan)
    if code == 0:
        assert b.read_prompt_file(path)  # it was a valid file
        return
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith(f"error: {path}"), err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_bad_options_exit_2(tmp_path, capsys):
    path = write(tmp_path, ".txt", "a red cat\n")
    for args in (["--seeds", "1..3", "--seeds-per-prompt", "2"], ["--seed", "1", "--seeds", "1..2"],
                 ["--seeds", "9..1"], ["--preset", "no-such-preset"], ["--steps", "0"],
                 ["-m", str(tmp_path / "no-such-model")]):
        code, _out, err = run_main(capsys, "batch", path, "--dry-run", *args)
        assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), (args, err)


def test_refusal_in_a_real_process(tmp_path):
    path = write(tmp_path, ".yaml", "- prompt: a red cat\n  frames: nine\n")
    exe = Path(sys.executable).with_name("videogen")
    proc = subprocess.run([str(exe), "batch", str(path), "--dry-run"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == f"error: {path}:2: 'frames' must be an integer, not 'nine'\n"
    path = write(tmp_path, ".txt", '{"prompt": "a dog"}\n')
    proc = subprocess.run([str(exe), "batch", str(path), "-o", str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: {path}:1: a JSON object in a .txt file")
    assert not (tmp_path / "out").exists()
