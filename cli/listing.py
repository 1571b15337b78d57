"""`videogen models`: families, their tasks, and the presets that use each."""

from __future__ import annotations

import sys


def list_models() -> None:
    from videogen import presets
    from videogen.families import FAMILIES

    by_family: dict[str, list[str]] = {}
    for name, path in sorted(presets.all_presets().items()):
        p = presets.parse_preset(path, name)
        by_family.setdefault(p.family or "(unknown)", []).append(f"{name:<26} {p.description}")
    for f in FAMILIES:
        sys.stdout.write(f"{f.name:<12} tasks: {', '.join(f.tasks):<16} pipelines: {', '.join(f.pipelines)}\n")
        for line in by_family.pop(f.name, []):
            sys.stdout.write(f"    {line}\n")
    for family, lines in by_family.items():
        sys.stdout.write(f"{family}\n" + "".join(f"    {line}\n" for line in lines))
