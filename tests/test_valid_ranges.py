"""Every public function and class documents its valid range (issue 15).

Convention (one for the whole package): the docstring of every name in
``fixpoint_rl.tabular.__all__`` and ``fixpoint_rl.envs.__all__`` that is a function or a class
contains a paragraph that starts with a line ``Valid range:`` (after indentation) and runs to the
next blank line (or the end of the docstring), e.g.::

    Valid range: alpha > 0 (down to 1e-4 tested); iterations ≥ 1 with iterations·N·A within the
    work budget. Outside it a ValueError names the argument.

The paragraph must name every numeric parameter of the signature by its Python name (``alpha``,
not only ``α``), so a reader can match the text to the call; a function without numeric
parameters says ``no numeric arguments`` and may describe its array arguments. Numeric
parameters are those the fuzz registry (``tests/fuzz_registry.py``) declares as real, int or size
kinds, or gives a numeric range, plus every parameter whose default value is an int or a float
(not a bool); ``seed`` is exempt (every seed is an int ≥ 0 or a numpy Generator, as
``fixpoint_rl.envs.checks.as_generator`` documents). The texts themselves are checked against the code by the fuzz property tests
(``tests/test_fuzz.py``), whose registry ranges are the same statements in machine-readable form.
"""

from __future__ import annotations

import inspect
import numbers
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fixpoint_rl.envs as envs  # noqa: E402
import fixpoint_rl.tabular as tabular  # noqa: E402
from fuzz_registry import REGISTRY  # noqa: E402

NUMERIC_KINDS = {"real", "opt_real", "int", "opt_int", "size", "opt_size"}
SEED_NAMES = {"seed"}
HEADING = re.compile(r"^[ \t]*Valid range:", re.MULTILINE)


def public_callables():
    names = []
    for module in (tabular, envs):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                names.append((name, obj))
    return sorted(names, key=lambda item: item[0])


def valid_range_paragraph(doc: str) -> str | None:
    """The text from the ``Valid range:`` line to the next blank line (None if absent)."""
    match = HEADING.search(doc)
    if match is None:
        return None
    lines = []
    for line in doc[match.start():].splitlines():
        if not line.strip():
            break
        lines.append(line.strip())
    return " ".join(lines)


def numeric_parameters(name: str, obj) -> list[str]:
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return []
    entry = REGISTRY.get(name)
    declared = set()
    if entry is not None:
        declared |= {arg for arg, kind in entry.kinds.items() if kind in NUMERIC_KINDS}
        declared |= set(getattr(entry, "ranges", {}) or {})
    found = []
    for param in params.values():
        default = param.default
        numeric_default = (
            default is not inspect.Parameter.empty
            and isinstance(default, numbers.Real)
            and not isinstance(default, bool)
        )
        if param.name in SEED_NAMES:
            continue  # every seed takes an int ≥ 0 or a numpy Generator (checks.as_generator)
        if param.name in declared or numeric_default:
            found.append(param.name)
    return found


def test_paragraph_extraction():
    doc = "Summary.\n\n    Valid range: alpha > 0;\n    iterations ≥ 1.\n\n    Returns: x."
    assert valid_range_paragraph(doc) == "Valid range: alpha > 0; iterations ≥ 1."
    assert valid_range_paragraph("Summary only.") is None
    # a paragraph naming alpha only does not cover a numeric 'iterations'
    def f(game, alpha, iterations=10, flag=True):  # noqa: ARG001
        """Valid range: alpha > 0."""

    assert numeric_parameters("no-such-entry", f) == ["iterations"]


@pytest.mark.parametrize("name,obj", public_callables(), ids=[n for n, _ in public_callables()])
def test_public_name_documents_its_valid_range(name, obj):
    doc = inspect.getdoc(obj) or ""
    paragraph = valid_range_paragraph(doc)
    assert paragraph is not None, f"{name}: docstring has no 'Valid range:' paragraph"
    numeric = numeric_parameters(name, obj)
    if not numeric:
        assert "no numeric arguments" in paragraph or len(paragraph) > len("Valid range:") + 5, (
            f"{name}: empty 'Valid range:' paragraph"
        )
        return
    missing = [p for p in numeric if not re.search(rf"(?<![\w.]){re.escape(p)}(?!\w)", paragraph)]
    assert not missing, (
        f"{name}: 'Valid range:' paragraph does not name the numeric parameter(s) {missing}: "
        f"{paragraph!r}"
    )
