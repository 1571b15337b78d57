"""`videogen models`: families, their tasks, and the presets that use each."""

from __future__ import annotations

import sys


def list_models() -> None:
    from videogen import presets
    from videogen.families import FAMILIES

    by_family: dict[str, list[str]] = {}
    for name, p in presets.readable_presets():
        if isinstance(p, Exception):
            sys.stderr.write(f"warning: preset '{name}' is broken: {p}\n")
            by_family.setdefault("(broken presets)", []).append(f"{name:<26} (broken: see stderr)")
            continue
        by_family.setdefault(p.family or "(unknown)", []).append(f"{name:<26} {p.description}")
    families: dict[str, tuple[list[str], list[str]]] = {}
    for f in FAMILIES:  # a family may have several adapters (e.g. Wan text- and image-to-video)
        tasks, pipelines = families.setdefault(f.name, ([], []))
        tasks.extend(t for t in f.tasks if t not in tasks)
        pipelines.extend(f.pipelines)
    for name, (tasks, pipelines) in families.items():
        sys.stdout.write(f"{name:<12} tasks: {', '.join(tasks):<22} pipelines: {', '.join(pipelines)}\n")
        for line in by_family.pop(name, []):
            sys.stdout.write(f"    {line}\n")
    for family, lines in by_family.items():
        sys.stdout.write(f"{family}\n" + "".join(f"    {line}\n" for line in lines))
