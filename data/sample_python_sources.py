"""Real text that ships with Python packages: wheel metadata and licenses, the stdlib, spaCy's examples."""

from __future__ import annotations

import ast
import email.message
import email.parser
import re
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path
from random import Random

from sample_debian_sources import installed_versions
from sample_doc import Doc, clean, truncate

SITE_PACKAGES = (Path(sysconfig.get_paths()["purelib"]), Path("/usr/lib/python3/dist-packages"))
STDLIB = Path("/usr/lib/python3.11")
STDLIB_PACKAGE = "libpython3.11-stdlib"
STDLIB_SKIP = re.compile(r"(^|/)(test|tests|idlelib|lib2to3|turtledemo|site-packages|dist-packages|config-[^/]*)(/|$)")
SPACY_VERSION = "3.8.2"
LICENSE_FILE = re.compile(r"(LICEN[CS]E|COPYING|NOTICE)[^/]*$", re.IGNORECASE)
MIN_DESCRIPTION_CHARS = 300
MIN_DOCSTRING_CHARS = 300
LICENSE_FILE_CHARS = (200, 16000)
CODE_BODY_LINES = (20, 90)


class Distribution:
    """An installed distribution's name, version, metadata directory and parsed metadata."""

    def __init__(self, meta_dir: Path) -> None:
        self.meta_dir = meta_dir
        self.meta_file = meta_dir / ("METADATA" if meta_dir.suffix == ".dist-info" else "PKG-INFO")
        self.meta: email.message.Message = email.parser.Parser().parsestr(self.meta_file.read_text(errors="replace"))
        self.name: str = self.meta["Name"] or meta_dir.name
        self.version: str = self.meta["Version"] or "0"
        self.url = f"https://pypi.org/project/{self.name.lower()}/{self.version}/"
        self.json_url = f"https://pypi.org/pypi/{self.name.lower()}/{self.version}/json"

    @property
    def license(self) -> str:
        """The distribution's own statement: SPDX expression, a short License field, or the classifier."""
        if self.meta["License-Expression"]:
            return self.meta["License-Expression"]
        field = (self.meta["License"] or "").strip()
        if field and len(field) < 60 and field != "UNKNOWN":
            return field
        for classifier in self.meta.get_all("Classifier") or []:
            if classifier.startswith("License ::"):
                return classifier.split("::")[-1].strip()
        return "unknown (see distribution)"

    def doc(self, text: str, kind: str, path: str, source: str = "pypi-metadata", url: str = "") -> Doc:
        return Doc(text, source=source, url=url or self.url, license=self.license, lang="en", kind=kind,
                   package=self.name, version=self.version, path=path)


def distributions() -> Iterator[Distribution]:
    """Every installed distribution with metadata, in a fixed order, each (name, version) once.

    Debian ships some packages with both a .dist-info and an .egg-info folder of one version.
    """
    seen = set()
    for site in SITE_PACKAGES:
        for meta_dir in sorted(site.glob("*.dist-info")) + sorted(site.glob("*.egg-info")):
            if (meta_dir / "METADATA").is_file() or (meta_dir / "PKG-INFO").is_file():
                dist = Distribution(meta_dir)
                if (dist.name.lower(), dist.version) not in seen:
                    seen.add((dist.name.lower(), dist.version))
                    yield dist


def is_code_heavy(text: str) -> bool:
    """Markdown/reST descriptions where fenced or indented code is at least a third of the lines."""
    lines = [line for line in text.split("\n") if line.strip()]
    in_fence, code = False, 0
    for line in lines:
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        code += in_fence or line.startswith(("    ", ">>> ", "$ "))
    return bool(lines) and code / len(lines) >= 0.33


def package_descriptions() -> list[Doc]:
    """Long descriptions (prose or code) and one-line summaries (very short docs).

    A package installed twice (venv and Debian) gives the same README in two versions: a real
    near-duplicate, or an exact one when the text did not change.
    """
    docs: list[Doc] = []
    first_by_name: dict[str, Doc] = {}
    for dist in distributions():
        path = dist.meta_file.relative_to(dist.meta_dir.parent).as_posix()
        body = clean(dist.meta.get_payload() or dist.meta["Description"] or "")
        if len(body) >= MIN_DESCRIPTION_CHARS:
            doc = dist.doc(truncate(body), "code" if is_code_heavy(body) else "prose", path)
            first = first_by_name.setdefault(dist.name.lower().replace("_", "-"), doc)
            if first is not doc:
                doc.kind, doc.dup_of = ("exact_dup" if first.text == doc.text else "near_dup"), first
            docs.append(doc)
        summary = clean(dist.meta["Summary"] or "")
        if len(summary) >= 10 and summary != "UNKNOWN":
            docs.append(dist.doc(summary, "short", f"{path} (Summary)", url=dist.json_url))
    return docs


def package_license_files() -> list[Doc]:
    """License texts inside wheels: the same text from many packages, or with other copyright lines."""
    docs = []
    low, high = LICENSE_FILE_CHARS
    for dist in distributions():
        for path in sorted(p for p in dist.meta_dir.rglob("*") if p.is_file() and LICENSE_FILE.search(p.name)):
            text = clean(path.read_text(errors="replace"))
            if low <= len(text) <= high:
                rel = path.relative_to(dist.meta_dir).as_posix()
                docs.append(dist.doc(text, "license", f"{dist.meta_dir.name}/{rel}", source="pypi-license-file",
                                     url=f"{dist.url}files/{rel}"))
    return docs


def stdlib_modules() -> Iterator[tuple[str, str, ast.Module, str]]:
    """(dotted name, path under Lib/, syntax tree, source) of the pure-Python stdlib, tests left out."""
    for path in sorted(STDLIB.rglob("*.py")):
        rel = path.relative_to(STDLIB).as_posix()
        if STDLIB_SKIP.search(rel):
            continue
        source = path.read_text(errors="replace")
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        yield rel.removesuffix(".py").removesuffix("/__init__").replace("/", "."), rel, tree, source


def stdlib_docs(rng: Random, prose: int, code: int) -> list[Doc]:
    """Long docstrings (English technical prose) and mid-sized function bodies (code) of CPython's Lib/.

    A module docstring gets its docs.python.org page; everything else the highlighted lines on
    sources.debian.org, so no two documents share a URL.
    """
    debian_version = installed_versions()[STDLIB_PACKAGE]
    version = debian_version.split("-")[0]
    docstrings: dict[str, Doc] = {}
    bodies = []
    for module, rel, tree, source in stdlib_modules():
        source_url = f"https://sources.debian.org/src/python3.11/{debian_version}/Lib/{rel}/"
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            line = getattr(node, "lineno", 1)
            common = dict(lang="en", license="PSF-2.0", package="python3.11", version=version,
                          path=f"Lib/{rel}:{line}")
            text = ast.get_docstring(node)
            if text and len(text) >= MIN_DOCSTRING_CHARS:
                url = (f"https://docs.python.org/3.11/library/{module}.html" if isinstance(node, ast.Module)
                       else f"{source_url}?hl={line}")
                docstrings.setdefault(clean(text), Doc(clean(text), source="python-stdlib-docstring", kind="prose",
                                                       url=url, **common))
            if isinstance(node, ast.FunctionDef) and CODE_BODY_LINES[0] <= node.end_lineno - line <= CODE_BODY_LINES[1]:
                bodies.append(Doc(clean(ast.get_source_segment(source, node) or ""), source="python-stdlib-source",
                                  kind="code", url=f"{source_url}?hl={line}:{node.end_lineno}", **common))
    return rng.sample(list(docstrings.values()), prose) + rng.sample(bodies, code)


def spacy_examples(work: Path) -> list[Doc]:
    """spaCy's example sentences: one document per language, and each English sentence as a tiny doc.

    The wheel is only downloaded into `work` and read as a zip; it is never installed.
    """
    wheels = work / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.11", "--platform", "manylinux_2_17_x86_64", "-d", str(wheels),
                    f"spacy=={SPACY_VERSION}"], check=True, capture_output=True)
    wheel = zipfile.ZipFile(next(wheels.glob(f"spacy-{SPACY_VERSION}-*.whl")))
    docs = []
    for member in sorted(n for n in wheel.namelist() if re.fullmatch(r"spacy/lang/\w+/examples\.py", n)):
        lang = member.split("/")[2]
        tree = ast.parse(wheel.read(member).decode())
        sentences = [(element.lineno, element.value) for node in tree.body if isinstance(node, ast.Assign)
                     and getattr(node.targets[0], "id", "") == "sentences" for element in node.value.elts
                     if isinstance(element, ast.Constant)]
        url = f"https://github.com/explosion/spaCy/blob/v{SPACY_VERSION}/{member}"
        common = dict(source="spacy-examples", license="MIT", lang=lang, package="spacy", version=SPACY_VERSION)
        if lang == "en":
            docs += [Doc(clean(text), url=f"{url}?plain=1&line={line}", kind="short", path=f"{member}:{line}", **common)
                     for line, text in sentences]
        elif sentences and lang != "xx":
            text = clean("\n".join(text for _, text in sentences))
            docs.append(Doc(text, url=url, kind="non_english", path=member, **common))
    return docs
