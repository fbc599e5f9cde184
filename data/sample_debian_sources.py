"""Real text that ships in Debian packages: common licenses, copyright files, changelogs, man pages."""

from __future__ import annotations

import gzip
import re
import subprocess
from pathlib import Path
from random import Random

from sample_doc import Doc, clean, truncate

DEBIAN_DOC = Path("/usr/share/doc")
COMMON_LICENSES = Path("/usr/share/common-licenses")
CHANGELOG_CHARS = 4000
MIN_MANPAGE_CHARS = 400
MANPAGE_PACKAGES = ("manpages", "manpages-de", "manpages-fr", "manpages-es", "manpages-it",
                    "manpages-pl", "manpages-ru", "manpages-ja")
MANPAGE_LICENSES = {"manpages": "GPL-2+ and Linux-man-pages-copyleft (per page)",
                    "manpages-ja": "same as the original man pages (DFSG-free, per page)"}
ENGLISH_MANPAGE_SECTIONS = "man[457]"
META_URL = "https://metadata.ftp-master.debian.org/changelogs/main/{initial}/{package}/{package}_{file}"


def run(cmd: list[str], cwd: Path | None = None) -> str:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True, errors="replace").stdout


def installed_versions() -> dict[str, str]:
    """package -> version of everything dpkg knows about."""
    listing = run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\n"])
    return dict(line.split("\t") for line in listing.splitlines() if "\t" in line)


def common_licenses() -> list[Doc]:
    """/usr/share/common-licenses: symlinks (GPL -> GPL-3) are exact duplicates, versions near ones."""
    version = installed_versions()["base-files"]
    return [Doc(clean(path.read_text()), source="debian-common-licenses", lang="en", kind="license",
                license="verbatim copying permitted (license text)", package="base-files", version=version,
                url=f"https://sources.debian.org/src/base-files/{version}/licenses/{path.name}", path=str(path))
            for path in sorted(COMMON_LICENSES.iterdir()) if path.is_file()]


def doc_files(rng: Random, filename: str, count: int) -> list[tuple[str, Path]]:
    """A seeded sample of (package, path) of /usr/share/doc/<package>/<filename>, symlinked dirs skipped."""
    paths = sorted(p for p in DEBIAN_DOC.glob(f"*/{filename}") if p.is_file() and not p.parent.is_symlink())
    return sorted((path.parent.name, path) for path in rng.sample(paths, count))


def debian_copyright_files(rng: Random, count: int) -> list[Doc]:
    """Machine-readable copyright files: list-like, and full of the same license boilerplate."""
    versions, docs = installed_versions(), []
    for package, path in doc_files(rng, "copyright", count):
        text = truncate(clean(path.read_text(errors="replace")))
        first_license = re.search(r"^License: *(\S.*)$", text, re.MULTILINE)
        docs.append(Doc(text, source="debian-copyright", lang="en", kind="license",
                        license=first_license.group(1) if first_license else "see file",
                        url=META_URL.format(initial=package[0], package=package, file="copyright"),
                        package=package, version=versions.get(package, "?"), path=str(path)))
    return docs


def debian_changelogs(rng: Random, count: int) -> list[Doc]:
    """The newest entries of changelog.Debian.gz: list-heavy documents."""
    versions, docs = installed_versions(), []
    for package, path in doc_files(rng, "changelog.Debian.gz", count):
        text = truncate(clean(gzip.decompress(path.read_bytes()).decode(errors="replace")), CHANGELOG_CHARS)
        docs.append(Doc(text, source="debian-changelog", lang="en", kind="list",
                        license=f"same as package {package} (see its copyright file)",
                        url=META_URL.format(initial=package[0], package=package, file="changelog"),
                        package=package, version=versions.get(package, "?"), path=str(path)))
    return docs


def fetch_manpages(work: Path) -> dict[str, tuple[Path, str]]:
    """apt-get download the man-page packages, dpkg -x each under work/<package> (never into /).

    Returns package -> (unpacked root, package version).
    """
    debs = work / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    run(["apt-get", "download", *MANPAGE_PACKAGES], cwd=debs)
    unpacked = {}
    for package in MANPAGE_PACKAGES:
        deb = next(debs.glob(f"{package}_*.deb"))
        run(["dpkg", "-x", str(deb), str(work / package)])
        unpacked[package] = (work / package, run(["dpkg-deb", "-f", str(deb), "Version"]).strip())
    return unpacked


def render_manpage(path: Path) -> str:
    """man -l renders to plain text when stdout is not a terminal; 80 columns like a default terminal."""
    out = subprocess.run(["man", "--nj", "--nh", "-E", "UTF-8", "-l", str(path)], capture_output=True, check=False,
                         env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    return clean(out.stdout.decode("utf-8", errors="replace"))


def manpages(work: Path, rng: Random, per_language: int, english: int) -> list[Doc]:
    """Translated man pages (non-English prose) and English man pages from sections 4, 5 and 7."""
    docs = []
    for package, (root, version) in fetch_manpages(work).items():
        lang = package.removeprefix("manpages-") if package != "manpages" else "en"
        man_dir = root / "usr/share/man" / ("" if lang == "en" else lang)
        pattern = f"{ENGLISH_MANPAGE_SECTIONS if lang == 'en' else 'man*'}/*.gz"
        candidates = sorted(p for p in man_dir.glob(pattern) if p.is_file() and not p.is_symlink())
        rng.shuffle(candidates)
        wanted, picked = (english if lang == "en" else per_language), []
        for path in candidates:
            if len(picked) == wanted:
                break
            if gzip.decompress(path.read_bytes()).startswith(b".so "):
                continue
            text = render_manpage(path)
            if len(text) < MIN_MANPAGE_CHARS:
                continue
            page, section = path.name.removesuffix(".gz").rsplit(".", 1)
            suffix = "" if lang == "en" else f".{lang}"
            picked.append(Doc(truncate(text), source=f"debian-{package}", lang=lang,
                            kind="prose" if lang == "en" else "non_english",
                            license=MANPAGE_LICENSES.get(package, "GPL-3+"), package=package, version=version,
                            url=f"https://manpages.debian.org/bookworm/{package}/{page}.{section}{suffix}.html",
                            path=path.relative_to(root).as_posix()))
        docs += picked
    return docs
