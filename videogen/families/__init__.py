"""Model family adapters, one file each, recognised by the pipeline class in `model_index.json`."""

from __future__ import annotations

from typing import Any

from videogen.errors import UserError
from videogen.families.base import Family
from videogen.families.cogvideox import CogVideoX
from videogen.families.hunyuan import Hunyuan
from videogen.families.hunyuan15 import Hunyuan15, Hunyuan15I2V
from videogen.families.ltx import LTX
from videogen.families.ltx2 import LTX2
from videogen.families.mochi import Mochi
from videogen.families.wan import Wan
from videogen.families.wan_i2v import WanI2V
from videogen.families.wan_v2v import WanV2V
from videogen.families.wan_vace import WanVACE

FAMILIES: list[type[Family]] = [Wan, WanI2V, WanVACE, WanV2V, LTX, LTX2, CogVideoX, Hunyuan, Hunyuan15, Hunyuan15I2V,
                               Mochi]


def family_for(index: dict[str, Any], where: str) -> type[Family]:
    cls_name = index.get("_class_name")
    for family in FAMILIES:
        if cls_name in family.pipelines:
            return family
    supported = ", ".join(f"{f.name} ({', '.join(f.pipelines)})" for f in FAMILIES)
    raise UserError(f"{where}: unsupported model family '{cls_name}'; supported: {supported}")
