"""The record every sample source yields, and the text hygiene they share."""

from __future__ import annotations

import dataclasses
import re

MAX_CHARS = 9000
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


@dataclasses.dataclass
class Doc:
    """One corpus record before it gets an id.

    `kind` and `lang` are labels from where the text came from, not detected; `dup_of` is set only on
    the duplicates this recipe planted on purpose (real duplicates are left for dedup to find).
    """

    text: str
    source: str
    url: str
    license: str
    lang: str
    kind: str
    package: str
    version: str
    path: str
    dup_of: Doc | None = None

    @property
    def origin(self) -> str:
        """`package version:file` — enough to find the exact bytes again."""
        return f"{self.package} {self.version}:{self.path}".replace(" :", ":")


def clean(text: str) -> str:
    """Drop control and line-separator characters and trailing blanks, which no source needs.

    U+2028/U+2029 and C1 controls would also split a line for readers that use str.splitlines.
    """
    text = CONTROL_CHARS.sub("", text.replace("\r\n", "\n"))
    return "\n".join(line.rstrip() for line in text.strip().split("\n"))


def truncate(text: str, limit: int = MAX_CHARS) -> str:
    """Cut long texts at a paragraph boundary so the corpus stays a few MB."""
    if len(text) <= limit:
        return text
    cut = text.rfind("\n\n", 0, limit)
    return text[: cut if cut > limit // 2 else limit].rstrip()
