"""docs/bad-inputs.md names a test for every bad input; each named test must exist, so the catalogue cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = ROOT / "docs" / "bad-inputs.md"
# Test functions of the four suites: pytest, Go (Test*/Fuzz*), Rust (#[test] fn or proptest fn), and scripts.
FUNCTION = re.compile(r"\b(test_\w+|Test[A-Z]\w*|Fuzz[A-Z]\w*|(?<=::)[a-z_][a-z0-9_]+)\b(?!\.(?:py|rs|go)\b)")
SCRIPT = re.compile(r"\bscripts/[\w./-]+\.(?:sh|py|c)\b")
DEFINITION = re.compile(r"^\s*(?:def|func|(?:pub\s+)?fn|async\s+def)\s+(\w+)", re.MULTILINE)


def rows(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    table = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]
    return [row for row in table if row[0] != "surface"]


def defined_names() -> set[str]:
    names: set[str] = set()
    for pattern in ("tests/*.py", "rust/**/*.rs", "go/**/*.go"):
        for path in ROOT.glob(pattern):
            names.update(DEFINITION.findall(path.read_text("utf-8", errors="replace")))
    return names


def unbacked(table: list[list[str]], names: set[str]) -> list[str]:
    """Rows naming no test, and named tests or scripts that do not exist."""
    problems = []
    for row in table:
        if len(row) != 4:
            problems.append(f"not four columns: {row}")
            continue
        functions = set(FUNCTION.findall(row[3]))
        scripts = SCRIPT.findall(row[3])
        if not functions and not scripts:
            problems.append(f"names no test: {row[1]}")
        problems += [f"{name} is not defined ({row[1][:60]})" for name in sorted(functions - names)]
        problems += [f"{path} does not exist" for path in scripts if not (ROOT / path).is_file()]
    return problems


def test_the_catalogue_is_large_and_every_row_names_a_test_that_exists() -> None:
    table = rows(CATALOGUE.read_text("utf-8"))
    assert len(table) >= 60, f"{len(table)} cases"
    problems = unbacked(table, defined_names())
    assert not problems, "docs/bad-inputs.md:\n" + "\n".join(problems)


def test_the_check_catches_missing_tests_and_rows_without_one() -> None:
    text = """| surface | bad input | error | test |
| CLI | a | exit 2 | tests/test_x.py::test_no_such_case_anywhere[a] |
| Go | b | ErrIO | TestNoSuchGoTest |
| HTTP | c | 400 | by hand |
| C ABI | d | LORAKIT_IO | scripts/no_such_script.sh |
| Rust | e | Io | base_search.rs::copied_adapter_finds_its_base_on_the_search_path |
"""
    problems = unbacked(rows(text), defined_names())
    assert len(problems) == 4, problems
    assert not any("copied_adapter" in p for p in problems)
