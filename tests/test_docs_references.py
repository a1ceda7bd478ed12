"""Every document the code and the docs name exists, and so does every part of one they name.

Why: a newcomer who clones the repository follows these names to learn the rules the code implements; a name that
leads nowhere (the code once named DOMAIN.md 71 times, and no such file existed) is worse than none.

A reference is a path ending in ``.md`` in any tracked text file (code, comments, docstrings, settings
descriptions, sample configs, markdown links). It resolves against the referring file's folder or the nearest of
its parents (the repository root last); a bare name of a file in docs/ may mean that one, and a bare ``DOMAIN.md``
or ``ARCHITECTURE.md`` always does. A section of docs/DOMAIN.md or docs/ARCHITECTURE.md is named as
``docs/DOMAIN.md §Haul cycle``: the text after ``§`` must begin with one of that file's headings; words quoted
from DOMAIN.md must be in it. A part of another document is named as ``docs/RELIABILITY.md, "Soak"``. Markdown
links to ``#anchors`` must name a heading. ``../shared/...`` is an old brief outside the repository: code never
names it.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".py", ".js", ".md", ".yaml", ".yml", ".toml", ".html", ".cfg", ".conf", ".sql", ".txt", ".sh", ".ini",
                 ""}
DESIGN_DOCS = {"DOMAIN.md", "ARCHITECTURE.md"}
# a path to a markdown file: letters, digits and ./_- segments, ending in .md (not part of a longer word or URL)
REFERENCE = re.compile(r"(?<![\w/.:$-])((?:\.{1,2}/)*[\w.-]+(?:/[\w.-]+)*\.md)(?![\w-])(?:#([\w-]+))?")
SECTION = re.compile(r"((?:docs/)?(?:DOMAIN|ARCHITECTURE)\.md)[ \t]*§")
CONTINUATION = re.compile(r"[ \t]*\n[ \t]*(?:#+|//|--|\*)?[ \t]*")  # a line break, and the next line's comment marker
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Reference:
    source: str  # repository-relative path of the referring file
    line: int
    target: str  # as written
    anchor: str | None = None


def _tracked_names() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [name for name in listed.decode().split("\0") if name]


def _tracked_text_files() -> list[Path]:
    files = []
    for name in _tracked_names():
        path = ROOT / name
        if "vendor/" in name or path.suffix not in TEXT_SUFFIXES or not path.is_file():
            continue
        if path.suffix == "" and path.name not in {"Makefile", "Dockerfile"}:
            continue
        files.append(path)
    return files


def _references() -> list[Reference]:
    found = []
    for path in _tracked_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        source = str(path.relative_to(ROOT))
        for number, line in enumerate(text.splitlines(), 1):
            for match in REFERENCE.finditer(line):
                found.append(Reference(source, number, match.group(1), match.group(2)))
    return found


def _resolve(ref: Reference) -> Path | None:
    """The file a reference names, or None when no reading of it exists."""
    if Path(ref.target).name in DESIGN_DOCS and "/" not in ref.target.removeprefix("docs/"):
        candidates = [ROOT / "docs" / Path(ref.target).name]
    elif ref.source == "pyproject.toml":  # package data, relative to its package
        candidates = [ROOT / name for name in _tracked_names() if name.endswith("/" + ref.target)]
    else:
        folder = (ROOT / ref.source).parent
        candidates = [parent / ref.target for parent in [folder, *folder.parents]]  # nearest first
        if "/" not in ref.target:  # a bare name of one of the documents in docs/
            candidates.append(ROOT / "docs" / ref.target)
    for candidate in candidates:
        resolved = candidate.resolve()
        if resolved.is_file() and resolved.is_relative_to(ROOT):
            return resolved
    return None


def _headings(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [h.strip().strip("`") for h in HEADING.findall(text)]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def test_every_referenced_markdown_file_exists() -> None:
    missing = [f"{r.source}:{r.line}: {r.target}" for r in _references() if _resolve(r) is None]
    assert missing == [], "references to markdown files that do not exist"


def test_markdown_link_anchors_name_a_heading() -> None:
    wrong = []
    for ref in _references():
        target = _resolve(ref)
        if ref.anchor and target is not None and ref.anchor not in {_slug(h) for h in _headings(target)}:
            wrong.append(f"{ref.source}:{ref.line}: {ref.target}#{ref.anchor}")
    assert wrong == [], "links to headings that do not exist"


def test_links_within_a_markdown_file_name_one_of_its_headings() -> None:
    wrong = []
    for path in _tracked_text_files():
        if path.suffix != ".md":
            continue
        text = path.read_text(encoding="utf-8")
        slugs = {_slug(h) for h in _headings(path)}
        for anchor in re.findall(r"\]\(#([\w-]+)\)", text):
            if anchor not in slugs:
                wrong.append(f"{path.relative_to(ROOT)}: #{anchor}")
    assert wrong == []


def _section_references() -> list[tuple[str, str, str]]:
    """(file:line, DOMAIN.md or ARCHITECTURE.md, the text after the section sign, up to 200 characters): a section
    name wrapped onto the next line (of prose, a comment or a docstring) is read with it."""
    found = []
    for path in _tracked_text_files():
        if path == Path(__file__).resolve():
            continue
        source = str(path.relative_to(ROOT))
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in SECTION.finditer(text):
            number = text.count("\n", 0, match.start()) + 1
            tail = CONTINUATION.sub(" ", text[match.end(1):match.end(1) + 400]).lstrip(" §")
            found.append((f"{source}:{number}", Path(match.group(1)).name, tail[:200]))
    return found


def test_every_named_section_of_the_design_docs_is_a_heading() -> None:
    headings = {name: _headings(ROOT / "docs" / name) for name in DESIGN_DOCS if (ROOT / "docs" / name).is_file()}
    wrong = []
    for where, doc, tail in _section_references():
        names = headings.get(doc, [])
        if not any(re.match(re.escape(h) + r"(?!\w)", tail) for h in names):
            wrong.append(f"{where}: {doc} §{tail}")
    assert wrong == [], "sections of docs/DOMAIN.md or docs/ARCHITECTURE.md that are not headings there"


QUOTE = re.compile(r"DOMAIN\.md(?:'s|:)[ \t]*([\"'])")


def _plain(text: str) -> str:
    """Lower case, markdown emphasis and code marks dropped, whitespace collapsed: how a quote is compared."""
    return " ".join(re.sub(r"[*`]", "", text).lower().split())


def test_what_the_code_quotes_from_domain_md_is_in_it() -> None:
    """``docs/DOMAIN.md: "a few centimetres"``: the quoted words are in docs/DOMAIN.md."""
    domain = _plain((ROOT / "docs" / "DOMAIN.md").read_text(encoding="utf-8"))
    wrong, quotes = [], 0
    for path in _tracked_text_files():
        if path == Path(__file__).resolve():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in QUOTE.finditer(text):
            tail = CONTINUATION.sub(" ", text[match.end():match.end() + 400])
            quote = tail.split(match.group(1))[0].strip(" .")
            quotes += 1
            if _plain(quote) not in domain:
                wrong.append(f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}: {quote!r}")
    assert quotes >= 5, "the quote pattern found too few quotes to be checking anything"
    assert wrong == [], "quoted from docs/DOMAIN.md but not in it"


NAMED_PART = re.compile(r"([\w./-]+\.md),?[ \t]+(?:\"([^\"\n]+)\"|\(([A-Z][^)\n]*)\))")


def test_a_part_named_in_another_document_is_there() -> None:
    """``docs/RELIABILITY.md, "Soak"`` or ``simulators/README.md (Calibration)``: a heading (or a bold paragraph
    title) of that file holds the words."""
    wrong, named = [], 0
    for path in _tracked_text_files():
        if path == Path(__file__).resolve():
            continue
        source = str(path.relative_to(ROOT))
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for match in NAMED_PART.finditer(line):
                target = _resolve(Reference(source, number, match.group(1)))
                name = match.group(2) or match.group(3)
                if target is None or target.suffix != ".md":
                    continue
                named += 1
                text = target.read_text(encoding="utf-8")
                if not any(name in h for h in _headings(target)) and f"**{name}" not in text:
                    wrong.append(f"{source}:{number}: {match.group(1)} {name!r}")
    assert named >= 4, "the pattern found too few named parts to be checking anything"
    assert wrong == [], "parts of documents named but not there"


def test_design_doc_sections_are_named_in_the_uniform_form() -> None:
    """``DOMAIN.md, Haul cycle`` or ``DOMAIN.md ("Haul cycle")`` is written ``docs/DOMAIN.md §Haul cycle``, so the
    test above can check it."""
    loose = re.compile(r"(?:DOMAIN|ARCHITECTURE)\.md(?:,\s*|\s*\(\"|\s+')[A-Z][a-z]")
    wrong = []
    for path in _tracked_text_files():
        if path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if loose.search(line):
                wrong.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert wrong == []


def test_the_old_brief_outside_the_repository_is_never_named() -> None:
    wrong = [f"{r.source}:{r.line}: {r.target}" for r in _references() if "shared/" in r.target]
    assert wrong == []


def test_the_checks_see_the_references_they_are_for() -> None:
    """Guards the patterns: a regex that matched nothing would pass every test above."""
    targets = {Path(r.target).name for r in _references()}
    assert {"DOMAIN.md", "ARCHITECTURE.md", "DEPLOYMENT.md", "RELIABILITY.md"} <= targets
    assert len([r for r in _references() if Path(r.target).name == "DOMAIN.md"]) >= 50
    assert _section_references(), "no §-section reference found"
