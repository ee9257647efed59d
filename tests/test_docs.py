"""Self-contained documentation: no source file cites a file that is not in the repository.

Docstrings and comments cite the papers (authors, year, arXiv id, section, equation); a reference
to a Markdown, Python or text file in a docstring, a comment or a Markdown/TOML file must name a
file a clone has. The oracle is the repository's own file list: a cited name must be the path
(from the root or from the citing file's folder) or the trailing path of some file. Code string
literals (files a test creates, paths it opens) are not citations and are not checked; files of
other projects are allowed when the text names the project (``CleanRL's c51_atari…``).
"""

from __future__ import annotations

import ast
import io
import os
import re
import tokenize
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE_FOLDERS = ("tabular", "deep", "envs", "benchmarks", "tests", "paper_figs")
SKIP_PARTS = {"__pycache__", ".numba_cache", "fixpoint_rl.egg-info", ".git", ".pytest_cache"}
# reference notes that live outside the repository (spelled in pieces so this file does not cite them)
NOTES = tuple(name + ".md" for name in ("preference", "distributional", "deep", "style"))
OUTSIDE = (NOTES, ("shared/" + "papers", "../" + "shared", "seed_abstracts" + ".txt"))
FILE_REFERENCE = re.compile(r"(?<![\w/.{}<>*-])([\w][\w/.-]*\.(?:md|py|txt))\b")
# a file of another project, cited as such: the project is named just before the reference
EXTERNAL_PROJECTS = re.compile(
    r"cleanrl|minatar|\btrl\b|dopamine|rlax|open_?spiel|dqn[ _]zoo|github|gymnasium|ale-py|"
    r"pytorch|numba|scipy|numpy|hugging ?face|transformers",
    re.IGNORECASE,
)


def _documentation(path: Path) -> list[tuple[int, str]]:
    """(line, text) of the prose of a file: docstrings and comments of Python files, whole
    Markdown / TOML / text files."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix != ".py":
        return [(1, text)]
    prose: list[tuple[int, str]] = []
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            prose.append((token.start[0], token.string))
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    prose.append((body[0].lineno, body[0].value.value))
    return prose


def _source_files() -> list[Path]:
    files = [REPO / "README.md", REPO / "pyproject.toml"]
    for folder in SOURCE_FOLDERS:
        for path in sorted((REPO / folder).rglob("*")):
            if path.is_file() and path.suffix in {".py", ".md", ".txt", ".toml", ".cfg"}:
                if not SKIP_PARTS.intersection(path.relative_to(REPO).parts):
                    files.append(path)
    return [f for f in files if f.exists()]


def _repo_paths() -> set[str]:
    paths = set()
    for folder, subfolders, files in os.walk(REPO):
        subfolders[:] = [d for d in subfolders if d not in SKIP_PARTS and not d.startswith(".")]
        base = Path(folder).relative_to(REPO)
        paths.update((base / name).as_posix() for name in files)
    return paths


def _exists(reference: str, citing: Path, paths: set[str]) -> bool:
    reference = reference.lstrip("./")
    if reference in paths:
        return True
    relative = (citing.parent / reference).resolve()
    if relative.is_file() and REPO in relative.parents:
        return True
    # a bare or partial path ("_common.py", "core/records.py"): the tail of a repository file;
    # an installed-package path ("fixpoint_rl/tabular/nlhf.py") maps onto the source folders
    tail = reference.split("fixpoint_rl/", 1)[-1]
    return any(path == tail or path.endswith("/" + tail) for path in paths)


def test_no_source_file_cites_the_notes_outside_the_repository():
    offenders = []
    for path in _source_files():
        if path == Path(__file__).resolve():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for group in OUTSIDE:
            for name in group:
                for match in re.finditer(re.escape(name), text):
                    line = text.count("\n", 0, match.start()) + 1
                    offenders.append(f"{path.relative_to(REPO)}:{line}: {name}")
    assert not offenders, "cite the paper instead:\n" + "\n".join(offenders)


def test_every_cited_file_exists_in_the_repository():
    paths = _repo_paths()
    missing = []
    for path in _source_files():
        for first_line, text in _documentation(path):
            for match in FILE_REFERENCE.finditer(text):
                reference = match.group(1)
                before = text[max(0, match.start() - 160):match.start()]
                if "://" in before.split()[-1:][0] if before.split() else False:
                    continue  # part of a URL
                if EXTERNAL_PROJECTS.search(before) or _exists(reference, path, paths):
                    continue
                line = first_line + text.count("\n", 0, match.start())
                missing.append(f"{path.relative_to(REPO)}:{line}: {reference}")
    assert not missing, "references to files not in the repository:\n" + "\n".join(missing)


def test_the_reference_pattern_finds_citations_and_skips_code():
    found = [m.group(1) for m in FILE_REFERENCE.finditer(
        "see paper_figs/_common.py and notes.md §3; f'{name}.py'; bench-<name>.csv; x.py.")]
    assert found == ["paper_figs/_common.py", "notes.md", "x.py"]
    paths = {"paper_figs/_common.py", "tabular/core/records.py"}
    assert _exists("_common.py", REPO / "tests" / "x.py", paths)
    assert _exists("core/records.py", REPO / "tests" / "x.py", paths)
    assert not _exists("notes.md", REPO / "tests" / "x.py", paths)


def test_every_figure_script_states_its_bands_and_seeds():
    # paper_figs/_common.figure_main prints UNCERTAINTY under the figure and records it in the JSON
    missing = []
    for script in sorted((REPO / "paper_figs").glob("*.py")):
        if script.name.startswith("_"):
            continue
        tree = ast.parse(script.read_text(encoding="utf-8"))
        names = {target.id for node in tree.body if isinstance(node, ast.Assign)
                 for target in node.targets if isinstance(target, ast.Name)}
        if "UNCERTAINTY" not in names:
            missing.append(script.name)
    assert not missing, f"figure scripts without UNCERTAINTY (bands, seeds or 'exact'): {missing}"
