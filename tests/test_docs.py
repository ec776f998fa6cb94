"""The repository stands alone: no tracked code, config or document cites a file outside it (a
specification, a papers folder, a shared data folder) or an issue-tracker number.

Papers are cited by section and equation; a decision is written down where it is made (the code's
docstring, ``projects/<method>/DESIGN.md``), not referenced by a tracker number.
"""

import os
import re
import subprocess

import pytest

from .conftest import REPO

# Built from pieces so that this file does not match its own patterns.
_FORBIDDEN = [
    ("a specification file", re.compile("SAD" + "_PADET")),
    ("a specification file", re.compile(r"\b" + "METHODS" + r"\.md\b")),
    ("a style-guide file", re.compile(r"\b" + "STYLE" + r"\.md\b")),
    ("a folder outside the repository", re.compile(r"\.\./" + "shared\\b")),
    ("a folder outside the repository", re.compile(r"/work/" + "shared\\b")),
    ("a papers folder", re.compile(r"(?<![\w./-])" + "papers" + r"/")),
    ("an issue number", re.compile(r"\b" + "issues?" + r"\s*#\s*\d+", re.IGNORECASE)),
    ("an issue number", re.compile(r"\b" + "issues?" + r"\s+\d+", re.IGNORECASE)),
    ("a specification section", re.compile(r"\b" + "spec" + r"\s+(§|[PS]\d)")),
    ("an upper-case spec marker", re.compile(r"\b" + "INFER" + "RED" + r"\b")),
]

_TEXT_SUFFIXES = (
    ".py",
    ".md",
    ".yaml",
    ".yml",
    ".txt",
    ".cfg",
    ".toml",
    ".ini",
    ".cpp",
    ".cu",
    ".h",
    ".cuh",
    ".sh",
)
_TEXT_NAMES = ("Makefile", "run", ".flake8", ".clang-format", ".gitignore")
# generated records (metrics, commands) and the shipped dataset's own licence / provenance
_SKIP_PREFIXES = ("benchmarks/results/", "semianchor/data/builtin/")
_SKIP_DIRS = {".git", ".venv", "build", "output", "datasets", "__pycache__", ".pytest_cache"}


def _tracked_files():
    """The repository's tracked files (git ls-files); a walk of the tree when it is no checkout."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60
        ).stdout
        files = [f for f in out.decode().split("\0") if f]
        if files:
            return files
    except (OSError, subprocess.SubprocessError):
        pass
    files = []
    for root, dirs, names in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS and not d.endswith(".egg-info")]
        files += [os.path.relpath(os.path.join(root, n), REPO) for n in names]
    return files


def _checked(path):
    if path.startswith(_SKIP_PREFIXES):
        return False
    return path.endswith(_TEXT_SUFFIXES) or os.path.basename(path) in _TEXT_NAMES


def forbidden_references(text):
    """(line number, what, matched text) for every forbidden reference in ``text``."""
    hits = []
    for number, line in enumerate(text.splitlines(), 1):
        for what, pattern in _FORBIDDEN:
            m = pattern.search(line)
            if m:
                hits.append((number, what, m.group(0)))
    return hits


@pytest.mark.parametrize(
    "line",
    [
        "see " + "SAD" + "_PADET.md 2.1",
        "written from " + "METHODS" + ".md",
        "(habit 1 of " + "STYLE" + ".md)",
        "BCCD = `" + "/".join(["..", "shared", "data"]) + "`",
        "text: `" + "/".join(["", "work", "shared", "notes.md"]) + "`",
        "copy in " + "papers" + "/noisy-anchors.md",
        "# a dead channel (" + "issue" + " #16)",
        "MaxIoUAssigner before " + "issue" + " 17",
        "(" + "Issue" + " 15, bullet 3)",
        "detection speed (" + "issues" + " 11 and 12)",
        "the " + "spec" + "'s P6 choice, " + "spec" + " S12",
        "marked " + "INFER" + "RED" + " in the code",
    ],
)
def test_the_check_finds_each_kind_of_reference(line):
    assert forbidden_references(line), line


@pytest.mark.parametrize(
    "line",
    [
        "PADet Sec. 3.3, Eq. 2; Table 1 (c); choice P4 in projects/PADet/DESIGN.md",
        "the layers are inferred from SSD's conventions (P1)",
        "https://openaccess.thecvf.com/content_cvpr_2020/papers/x.pdf",
        "a known issue of torchvision's CPU kernel",
        "spec = importlib.util.spec_from_file_location(name, path)",
    ],
)
def test_the_check_leaves_ordinary_text_alone(line):
    assert not forbidden_references(line), line


def test_tracked_files_cite_no_outside_file_or_issue_number():
    files = [f for f in _tracked_files() if _checked(f)]
    assert any(f.endswith("DESIGN.md") for f in files) and "README.md" in files, files[:20]
    problems = []
    for rel in files:
        path = os.path.join(REPO, rel)
        if not os.path.isfile(path):  # deleted in the working tree, not yet committed
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        for number, what, found in forbidden_references(text):
            problems.append(f"{rel}:{number}: {what} ({found!r})")
    assert not problems, "the repository must stand alone:\n" + "\n".join(problems)
