"""The `videogen` command. Heavy libraries are imported only when a render starts."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from videogen.cli import doctor as doctor_cli
from videogen.cli import download as download_cli
from videogen.cli import options as o
from videogen.cli import watch as w
from videogen.cli.batch import batch_command
from videogen.cli.plan import plan_command
from videogen.errors import VideogenError


def usage_message(e: Any) -> str:
    """A bad flag value as `--flag: what is wrong`, naming the value. typer has pydantic check values, whose wording
    names neither the value nor, in its terms, what was expected ("Input should be a valid integer"); say both.
    Other command-line errors (an unknown option, a missing argument) keep click's own message."""
    if type(e).__name__ != "BadParameter" or not getattr(getattr(e, "param", None), "opts", None):
        return e.format_message().strip()
    flag = e.param.opts[0]
    cause = e.__cause__  # pydantic's ValidationError, where typer validated with it
    errors = cause.errors() if callable(getattr(cause, "errors", None)) else []
    if not errors:
        return f"{flag}: {e.message}"
    error = errors[0]
    if error.get("type") == "value_error" and "error" in error.get("ctx", {}):
        return f"{flag}: {error['ctx']['error']}"
    what = {"int_parsing": "an integer", "int_from_float": "an integer", "float_parsing": "a number",
            "bool_parsing": "true or false"}.get(error.get("type", ""))
    said = f"must be {what}" if what else str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{flag}: {said}, not {error.get('input')!r}"


app = typer.Typer(no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False,
                  help="Text to video with open latent video diffusion models.")


def _print_version(value: bool) -> None:
    if value:
        from videogen import __version__

        sys.stdout.write(f"videogen {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Text to video with open latent video diffusion models."""
presets_app = typer.Typer(no_args_is_help=False, help="List and show presets.")
app.add_typer(presets_app, name="presets")


@app.command()
@o.with_render_options()  # one option per RenderSpec field, from its declaration in videogen/spec.py
def generate(
    prompt: Annotated[str | None, typer.Argument(help="What the video shows.", show_default=False)] = None,
    *,
    preset: o.PresetOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output .mp4 | .webm | .gif | folder for PNG frames (default: ./outputs/<prompt>-s<seed>.mp4).")] = None,
    from_: Annotated[Path | None, typer.Option("--from", help="Re-render from a run record (.json, or a video carrying one); flags override it.")] = None,
    allow_different_model: Annotated[bool, typer.Option("--allow-different-model", help="With --from: render even if the model's files differ from the record's.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run record as JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    preview: w.PreviewOpt = None, trace: w.TraceOpt = None, trace_fast: w.TraceFastOpt = False,
    audio: o.AudioWav = None,
    **render: Any,
) -> None:
    """Render one video from a text prompt (`-` reads it from stdin). `-o -` writes a fragmented MP4 to stdout."""
    from videogen.cli.render import render_one
    from videogen.errors import UserError
    from videogen.video import STDOUT

    flags = o.flag_values(**render)
    if prompt == "-":
        prompt = sys.stdin.read().strip()
        if not prompt:
            raise UserError("the prompt read from stdin (PROMPT '-') is empty")
    if output == STDOUT and as_json:
        raise UserError("-o - fills stdout with the video, so --json cannot print there; use one or the other")
    if allow_different_model and from_ is None:
        raise UserError("--allow-different-model goes with --from")
    rerun = None
    if from_ is not None:
        from videogen.settings import read_rerun

        rerun = read_rerun(from_)
    spec = o.merge(prompt, flags, preset, rerun)
    record = render_one(spec, output, overwrite=overwrite, quiet=quiet, rerun=rerun,
                        allow_different_model=allow_different_model,
                        watch=w.Watch(preview=preview, trace=trace, trace_fast=trace_fast), audio=audio)
    if output == STDOUT:
        return  # stdout carries only the video
    if as_json:
        sys.stdout.write(json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n")
    else:
        sys.stdout.write(record["output"] + "\n")


app.command("batch")(batch_command(generate))
app.command("download")(download_cli.download)
app.command("doctor")(doctor_cli.doctor)
app.command("plan")(plan_command)


@presets_app.callback(invoke_without_command=True)
def presets_default(ctx: typer.Context) -> None:
    """List presets (default) or show one."""
    if ctx.invoked_subcommand is None:
        presets_list()


@presets_app.command("list")
def presets_list() -> None:
    """List built-in and user presets."""
    from videogen import presets

    for name, p in presets.readable_presets():
        if isinstance(p, Exception):
            sys.stderr.write(f"warning: preset '{name}' is broken: {p}\n")
            sys.stdout.write(f"{name:<28} {'(broken: see stderr)':<40}\n")
        else:
            sys.stdout.write(f"{name:<28} {p.model or '(built-in model)':<40} {p.description}\n")


@presets_app.command("show")
def presets_show(name: Annotated[str, typer.Argument(help="Preset name or YAML path.")]) -> None:
    """Print a preset's file."""
    from videogen import presets

    p = presets.load_preset(name)
    sys.stdout.write(f"# {p.path}\n{p.path.read_text(encoding='utf-8')}")


@app.command()
def models(card: Annotated[str | None, typer.Option("--card", help="Show a preset's model card: parameters per component, download size, disk needed.")] = None) -> None:
    """Supported model families, their tasks and the presets that use them."""
    if card is not None:
        from videogen.plan.cards import card_text

        sys.stdout.write(card_text(card))
        return
    from videogen.cli.listing import list_models

    list_models()


def main() -> None:
    """Entry point: user errors become one line on stderr and an exit code, never a traceback."""
    try:  # typer >= 0.20 carries its own copy of click
        from typer._click import exceptions as click_errors
    except ImportError:
        from click import exceptions as click_errors


    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM ends a render like Ctrl-C: partial files removed, exit 130

    code = 0
    try:
        # OpenMP threads that spin while waiting make a CPU render 50x slower when another process holds a core
        # (measured: 14.5 s instead of 0.26 s of denoising for the built-in model); they must sleep instead.
        # Read once, when torch loads, so it is set here, before any torch import; a user's own setting wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        signal.signal(signal.SIGTERM, _terminate)
        if hasattr(signal, "SIGHUP"):  # a closed terminal ends a render the same way
            signal.signal(signal.SIGHUP, _terminate)
        # imported inside the try: Ctrl-C while rich loads is handled like any other
        from videogen.cli.progress import setup_logging

        setup_logging()
        rv = app(standalone_mode=False)
        # Outside standalone mode typer returns exit codes instead of raising them, Ctrl-C included (130).
        if isinstance(rv, int) and rv:
            code = rv
            if code == 130:
                sys.stderr.write("interrupted\n")
    except typer.Exit as e:
        code = e.exit_code
    except typer.Abort:
        sys.stderr.write("interrupted\n")
        code = 130
    except click_errors.ClickException as e:
        message = usage_message(e)
        if message:  # bare `videogen` raises one with no message after printing the help
            sys.stderr.write(f"error: {message}\n")
        code = 2
    except VideogenError as e:
        sys.stderr.write(f"error: {e}\n")
        code = e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        code = 130
    except Exception as e:  # a bug or a failure deep in a library: one line, details on request
        if os.environ.get("VIDEOGEN_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        sys.stderr.write(f"error: {type(e).__name__}: {msg} (set VIDEOGEN_DEBUG=1 for a traceback)\n")
        code = 1
    sys.stdout.flush()
    raise SystemExit(code)

