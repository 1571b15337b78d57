"""Prompt text: the cleaning diffusers' pipelines apply, and a check for words a tokenizer cannot read."""

from __future__ import annotations

import html
import logging
import re
from typing import Any

log = logging.getLogger("videogen")


def prompt_clean(text: str) -> str:
    """ftfy repair, HTML unescape (twice), whitespace collapsed: what some diffusers pipelines do to a prompt."""
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:  # diffusers skips this step too when ftfy is missing
        pass
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


def unknown_words(tokenizer: Any, text: str) -> list[str]:
    """Words that tokenize to the unknown token (for word-level vocabularies such as the built-in model's)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None:
        return []
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if unk not in ids:
        return []
    return [w for w in text.split() if unk in tokenizer(w, add_special_tokens=False).input_ids]


def warn_unknown(tokenizer: Any, texts: list[str]) -> None:
    for text in texts:
        words = unknown_words(tokenizer, text)
        if words:
            log.warning("the model's vocabulary does not have %s; those words are ignored",
                        ", ".join(f"'{w}'" for w in dict.fromkeys(words)))
