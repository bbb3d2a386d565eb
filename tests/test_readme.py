"""The README and the pages of docs/ stay true, as a new user would try them:

- every ``python`` block runs alone in a fresh interpreter and prints what its comments say, and an
  ``output`` block right after it is what it prints (a line ``...`` stands for any lines);
- every ``console`` block's commands run and succeed (or exit 1 where the line says ``# exits 1``), and print
  the lines shown under them;
- every relative link and picture points at a file that exists, and at a heading there when it names one;
- the sweep shown in the design page is the engine's own code;
- no word of the project's own history (issue numbers, rounds, releases) reaches a user.

A block that imports torch needs the torch extra (conftest's ``requires_torch``)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)


@dataclass
class Block:
    page: Path
    kind: str  # python, console, output, text, bash, ...
    code: str
    shown: str | None = None  # for a python block: the output block right after it

    @property
    def name(self) -> str:
        return self.page.relative_to(ROOT).with_suffix("").as_posix()


def blocks_of(page: Path) -> list[Block]:
    found: list[Block] = []
    for match in FENCE.finditer(page.read_text(encoding="utf-8")):
        kind, code = match.group(1), match.group(2)
        if kind == "output":
            assert found and found[-1].kind == "python" and found[-1].shown is None, \
                f"{page.name}: an output block must follow a python block"
            found[-1].shown = code
        else:
            found.append(Block(page, kind, code))
    return found


BLOCKS = [block for page in PAGES for block in blocks_of(page)]


def of_kind(kind: str) -> list:
    chosen = [b for b in BLOCKS if b.kind == kind]
    counts: dict[str, int] = {}
    params = []
    for block in chosen:
        counts[block.name] = counts.get(block.name, 0) + 1
        needs_torch = re.search(r"^\s*(import torch|from torch)\b", block.code, re.M) is not None
        params.append(pytest.param(block, id=f"{block.name}-{kind}-{counts[block.name]}",
                                   marks=[pytest.mark.requires_torch] if needs_torch else []))
    return params


PYTHON_BLOCKS, CONSOLE_BLOCKS = of_kind("python"), of_kind("console")


def claimed_outputs(block: str) -> list[str]:
    """What ``print(...)  # 0.010618 ...`` lines promise: the first word of their comment, in order."""
    return [first_word(m.group(1)) for m in re.finditer(r"^\s*print\(.*\)\s+#(.*)$", block, re.M)]


def first_word(line: str) -> str:
    words = line.split()
    return words[0].rstrip(",:;") if words else ""


def environment(folder: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROGD_")}
    env.update(MPLBACKEND="Agg", PYTHONPATH="", PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    return env


def lines(text: str) -> list[str]:
    found = [line.rstrip() for line in text.splitlines()]
    while found and not found[-1]:
        found.pop()
    return found


def matches(shown: str, printed: str) -> bool:
    """Does ``printed`` read as ``shown``, line for line, where a line ``...`` in ``shown`` is any lines?"""
    pattern = "".join(r"(?:.*\n)*?" if line == "..." else re.escape(line) + r"\n" for line in lines(shown))
    return re.fullmatch(pattern, "".join(f"{line}\n" for line in lines(printed))) is not None


@pytest.fixture
def folder(tmp_path):
    """A fresh folder holding the repository's demos/ (the sample data the pages use)."""
    shutil.copytree(ROOT / "demos", tmp_path / "demos", ignore=shutil.ignore_patterns("*.ipynb", "__pycache__"))
    return tmp_path


def test_the_pages_have_blocks_to_run():
    assert len(PYTHON_BLOCKS) >= 15 and len(CONSOLE_BLOCKS) >= 3
    python = [p.values[0] for p in PYTHON_BLOCKS]
    assert sum(len(claimed_outputs(b.code)) for b in python) >= 10
    assert sum(b.shown is not None for b in python) >= 4
    assert any(b.page == README for b in python) and any(b.page == README for b in [p.values[0] for p in
                                                                                     CONSOLE_BLOCKS])


@pytest.mark.parametrize("block", PYTHON_BLOCKS)
def test_each_python_block_runs_alone_and_prints_what_it_claims(block, folder):
    done = subprocess.run([sys.executable, "-c", block.code], cwd=folder, env=environment(folder),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    printed = [first_word(line) for line in done.stdout.splitlines()]
    claims = claimed_outputs(block.code)
    assert printed[:len(claims)] == claims, done.stdout
    if block.shown is not None:
        assert matches(block.shown, done.stdout), done.stdout


def commands(block: str) -> list[tuple[str, str]]:
    """The ``$ `` lines of a console block, each with its ``\\`` continuation lines, and the output shown
    under it (up to the next ``$ `` line)."""
    found: list[tuple[str, str]] = []
    continued = False
    for line in block.splitlines():
        if continued:
            command, shown = found[-1]
            found[-1] = (command[:-1] + " " + line.strip(), shown)
            continued = found[-1][0].endswith("\\")
        elif line.startswith("$ "):
            found.append((line[2:], ""))
            continued = line.endswith("\\")
        elif found:
            found[-1] = (found[-1][0], found[-1][1] + line + "\n")
    return found


@pytest.mark.parametrize("block", CONSOLE_BLOCKS)
def test_each_console_block_runs_and_prints_what_it_shows(block, folder):
    assert commands(block.code)
    for command, shown in commands(block.code):
        done = subprocess.run(shlex.split(command, comments=True), cwd=folder, env=environment(folder),
                              capture_output=True, text=True, timeout=120)
        expected = 1 if "# exits 1" in command else 0
        assert done.returncode == expected, f"{command}\n{done.stdout}\n{done.stderr}"
        if lines(shown):
            assert matches(shown, done.stdout), f"{command}\n{done.stdout}"


# -- links -------------------------------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def prose(text: str) -> str:
    """The page without its code: fenced blocks and inline code spans hold no links."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def anchors(page: Path) -> set[str]:
    """The ids GitHub gives the page's headings: lower case, punctuation dropped, spaces as hyphens, a
    repeated one numbered."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", FENCE.sub("", page.read_text(encoding="utf-8")), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return found


def links(page: Path) -> list[str]:
    return LINK.findall(prose(page.read_text(encoding="utf-8")))


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_relative_link_reaches_a_file_and_heading(page):
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        reached = (page.parent / path).resolve() if path else page
        assert reached.exists(), f"{page.name}: {target}: no such file"
        assert reached.is_relative_to(ROOT), f"{page.name}: {target}: outside the repository"
        if anchor:
            assert reached.suffix == ".md", f"{page.name}: {target}: a heading in a file that has none"
            assert anchor in anchors(reached), f"{page.name}: {target}: no such heading in {reached.name}"


def test_every_page_is_linked_from_the_readme_and_every_picture_is_shown():
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links(README)}
    assert [page.name for page in PAGES[1:] if page not in linked] == []
    shown = {(page.parent / target).resolve() for page in PAGES for target in links(page)}
    assert [p.name for p in sorted((ROOT / "docs").glob("*.png")) if p not in shown] == []


def test_the_anchors_are_githubs():
    assert "training-fast-one-trace-replayed" in anchors(ROOT / "docs" / "speed.md")
    assert "training-fit" in anchors(ROOT / "docs" / "networks.md")


# -- the design page shows the engine's own sweep ------------------------------------------------------------------

def code_lines(text: str) -> list[str]:
    """The lines of code in ``text``: comments and blank lines dropped, spacing normalised."""
    stripped = (re.sub(r"\s+#.*$", "", line).strip() for line in text.splitlines())
    return [" ".join(line.split()) for line in stripped if line and not line.startswith("#")]


def test_the_sweep_shown_in_the_design_page_is_the_engines():
    import inspect

    from microgd import engine

    (shown,) = [b.code for b in BLOCKS if b.code.startswith("def sweep(")]
    source = inspect.getsource(engine.sweep)
    body = source[source.index('"""', source.index('"""') + 3) + 3:]  # after the docstring
    assert code_lines(shown)[1:] == [*code_lines(body)[:-1], "return grads"]
    assert code_lines(body)[-1] == "return _finite_sums(grads)"  # the one line the page simplifies: the check


# -- no history --------------------------------------------------------------------------------------------------

HISTORY = re.compile(r"\b(round \d+|round \d+'s|issue #?\d+|issue \d+'s|previous release|release before|"
                     r"version before|earlier version|last release|baseline)\b", re.I)


def user_facing_texts() -> dict[str, str]:
    """The pages, the benchmark (its help and output are its source's strings), and microgd's and the demos'
    sources (docstrings, messages, help)."""
    files = [*PAGES, ROOT / "benchmarks" / "bench_engine.py", *sorted((ROOT / "microgd").rglob("*.py")),
             *sorted((ROOT / "demos").glob("*.py"))]
    return {f.relative_to(ROOT).as_posix(): f.read_text(encoding="utf-8") for f in files}


def test_no_word_of_the_projects_history_reaches_a_user():
    found = []
    for name, text in user_facing_texts().items():
        for number, line in enumerate(text.splitlines(), 1):
            line = line.replace("--baseline", "--other")  # the benchmark's option: another checkout to compare
            found += [f"{name}:{number}: {m.group(0)}" for m in HISTORY.finditer(line)]
    assert found == []
