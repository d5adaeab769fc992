"""The documentation refers only to things that exist (docs/math.md, README.md, docs/*.md).

* every function, class or module that docs/math.md names (``srl.…``) can be imported;
* every test it names (``tests/test_x.py::test_name``) is defined in that file;
* every equation and section cited as "docs/math.md eq. (N)" / "§N" anywhere in the
  repository exists in docs/math.md;
* every file linked from README.md and docs/*.md, or named there as a repository path
  (``srl/…``, ``tests/…``, …), exists, and nothing refers to a file outside the repository.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MATH = ROOT / "docs" / "math.md"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SOURCES = [p for d in ("srl", "reference", "backends", "tests", "scripts", "benchmarks") for p in (ROOT / d).rglob("*.py")]


def _math_text() -> str:
    return MATH.read_text(encoding="utf-8")


def _resolve(dotted: str) -> bool:
    """Import the longest importable module prefix of ``dotted``, then getattr the rest."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        module = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module and exc.name.split(".")[0] != "srl" and importlib.util.find_spec(module):
                # the module exists but needs an optional dependency (torch) that is not
                # installed here; the names inside it are checked where it is installed
                return True
            continue
        except ImportError:
            continue
        try:
            for name in parts[i:]:
                obj = getattr(obj, name)
        except AttributeError:
            return False
        return True
    return False


def _code_spans(text: str):
    return re.findall(r"`([^`\n]+)`", text)


def test_every_srl_name_in_math_md_exists():
    missing = []
    for span in _code_spans(_math_text()):
        m = re.match(r"(srl(?:\.[A-Za-z_][A-Za-z0-9_]*)+)", span)
        if m and not _resolve(m.group(1)):
            missing.append(m.group(1))
    assert not missing, f"docs/math.md names code that does not exist: {sorted(set(missing))}"


def test_every_test_named_in_math_md_exists():
    missing, current = [], None
    for span in _code_spans(_math_text()):
        m = re.fullmatch(r"(tests/[\w/]+\.py)?(?:::(\w+))?", span)
        if not m or not (m.group(1) or m.group(2)):
            continue
        if m.group(1):
            current = ROOT / m.group(1)
            if not current.exists():
                missing.append(m.group(1))
                continue
        if m.group(2):
            assert current is not None, f"`::{m.group(2)}` in docs/math.md before any test file is named"
            if not re.search(rf"^(?:def|class) {m.group(2)}\b", current.read_text(encoding="utf-8"), re.M):
                missing.append(f"{current.relative_to(ROOT)}::{m.group(2)}")
    assert not missing, f"docs/math.md names tests that do not exist: {missing}"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_in_the_docs_exists(path):
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)  # not code blocks
    missing = [span for span in _code_spans(text)
               if re.fullmatch(r"(srl|reference|backends|tests|scripts|docs|benchmarks)/[\w./-]*", span)
               and not (ROOT / span).exists()]
    assert not missing, f"{path.relative_to(ROOT)} names files that do not exist: {missing}"


def _labels():
    text = _math_text()
    equations = set(re.findall(r"^    .*\((\d+\.\d+)\)\s*$", text, re.M))
    sections = set(re.findall(r"^#+ (\d+(?:\.\d+)?)\.? ", text, re.M))
    return equations, sections


def test_math_md_numbers_every_equation_once():
    text = _math_text()
    labels = re.findall(r"^    .*\((\d+\.\d+)\)\s*$", text, re.M)
    assert len(labels) == len(set(labels)), sorted(x for x in labels if labels.count(x) > 1)
    for section in range(1, 9):
        assert re.search(rf"^## {section}\. ", text, re.M), f"docs/math.md has no section {section}"


@pytest.mark.parametrize("path", SOURCES + DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_citations_of_math_md_exist(path):
    equations, sections = _labels()
    text = path.read_text(encoding="utf-8")
    bad = []
    in_docs = path.suffix == ".md"  # in README.md and docs/*.md every "eq. N.M" is one of docs/math.md
    for line in text.splitlines():
        if path == MATH:
            bad += [f"({eq})" for eq in re.findall(r"\(([1-8]\.\d+)\)", line) if eq not in equations]
        if "math.md" not in line and not in_docs:
            continue
        tail = line[line.index("math.md"):] if "math.md" in line else line
        for run in re.findall(r"eqs?\.? ?((?:\(?\d+\.\d+\)?(?:, | and |–|-)?)+)", tail):
            for eq in re.findall(r"\d+\.\d+", run):  # "eq. (4.2)", "eqs. 4.2–4.3", "eqs. 1.3, 1.4"
                if eq not in equations:
                    bad.append(f"eq. {eq}")
        for sec in re.findall(r"§(\d+(?:\.\d+)?)", tail):
            if sec not in sections:
                bad.append(f"§{sec}")
    assert not bad, f"{path.relative_to(ROOT)} cites docs/math.md numbers that do not exist: {sorted(set(bad))}"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_in_docs_exist(path):
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # code such as ``f[0](x)`` is no link
    missing = []
    for target in re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        if not (path.parent / target).resolve().exists():
            missing.append(target)
    assert not missing, f"{path.relative_to(ROOT)} links to files that do not exist: {missing}"


@pytest.mark.parametrize("path", SOURCES + DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_refers_outside_the_repository(path):
    text = path.read_text(encoding="utf-8")
    outside = "SPEC" + r"\.md|\.\./" + "shared/"  # spelled in pieces so that this file passes itself
    assert not re.search(outside, text), (
        f"{path.relative_to(ROOT)} refers to a file outside the repository")
