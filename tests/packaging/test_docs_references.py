"""The repository stands alone: every `docs/reproduction.md §N` / `decision N` cited in it exists, and no file
refers to working notes that are not part of the repository."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "reproduction.md"

HEADING = re.compile(r"^#+ §(\d+(?:\.\d+)*)\b", re.M)
CITED_SECTION = re.compile(r"§(\d+(?:\.\d+)*)(?: step (\d+))?")
CITED_DECISION = re.compile(r"\bdecisions? (\d+)(?:\s*[–-]\s*(\d+))?", re.I)
LIST_ITEM = re.compile(r"^\s*(\d+)\. ", re.M)
# the name of the working notes this project was built from, spelt so that this file does not contain it
NOTES = "SP" + "EC"


def _tracked_text_files() -> Dict[str, str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to list the tracked files")
    names = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    texts = {}
    for name in names:
        path = REPO / name
        if (
            path.suffix in {".py", ".md", ".toml", ".txt", ".json", ".cfg", ".yml", ".yaml"}
            or name == ".ci/run"
        ):
            if path.is_file():
                texts[name] = path.read_text(encoding="utf-8", errors="replace")
    return texts


def _sections(doc: str) -> Dict[str, str]:
    """'6.2.1' -> that section's text up to the next heading of any level."""
    marks = [(m.group(1), m.start()) for m in HEADING.finditer(doc)]
    starts = [m.start() for m in re.finditer(r"^#+ ", doc, re.M)] + [len(doc)]
    out = {}
    for number, start in marks:
        end = min(s for s in starts if s > start)
        out[number] = doc[start:end]
    return out


def _decisions(doc: str) -> Set[int]:
    block = doc.split("## Decisions", 1)[1].split("\n## ", 1)[0]
    return {int(n) for n in LIST_ITEM.findall(block)}


def _citations(texts: Dict[str, str]) -> Tuple[Set[Tuple[str, str]], Set[Tuple[int, str]]]:
    sections: Set[Tuple[str, str]] = set()  # ('7.1 step 5' or '8', where)
    decisions: Set[Tuple[int, str]] = set()
    for name, text in texts.items():
        if name == "docs/reproduction.md":
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if "reproduction.md" not in line:
                continue
            where = f"{name}:{number}"
            for m in CITED_SECTION.finditer(line):
                sections.add((m.group(1) + (f" step {m.group(2)}" if m.group(2) else ""), where))
            for m in CITED_DECISION.finditer(line):
                first, last = int(m.group(1)), int(m.group(2) or m.group(1))
                decisions.update((n, where) for n in range(first, last + 1))
    return sections, decisions


def test_every_cited_section_and_decision_exists() -> None:
    doc = DOC.read_text(encoding="utf-8")
    sections, decisions = _sections(doc), _decisions(doc)
    assert {str(n) for n in range(12)} <= set(sections), "sections §0-§11 must all exist"
    assert decisions == set(range(1, 11)), "decisions are numbered 1-10"
    cited_sections, cited_decisions = _citations(_tracked_text_files())
    assert len(cited_sections) > 50  # the code does cite the document
    missing: List[str] = []
    for cited, where in sorted(cited_sections):
        number, _, step = cited.partition(" step ")
        if number in sections:
            if step and int(step) not in {int(n) for n in LIST_ITEM.findall(sections[number])}:
                missing.append(f"§{cited} ({where}): no step {step}")
            continue
        parent, _, item = number.rpartition(".")  # §10.1.2 = item 2 of §10.1's list
        if parent in sections and item and int(item) in {int(n) for n in LIST_ITEM.findall(sections[parent])}:
            continue
        missing.append(f"§{cited} ({where})")
    missing += [f"decision {n} ({where})" for n, where in sorted(cited_decisions) if n not in decisions]
    assert not missing, "cited but absent from docs/reproduction.md:\n" + "\n".join(missing)


def test_no_file_refers_to_notes_outside_the_repository() -> None:
    offenders = [
        f"{name}:{number}"
        for name, text in _tracked_text_files().items()
        for number, line in enumerate(text.splitlines(), start=1)
        if re.search(rf"\b{NOTES}\b", line)
    ]
    assert not offenders, "refers to a document the repository does not contain: " + ", ".join(offenders)
