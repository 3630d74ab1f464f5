"""The documentation is tested: every ```python block runs, and the Sphinx site builds with -W.

Blocks of one file run in order in one namespace, so a later block can use names an earlier
one defined. Each file gets a fresh namespace. Code is compiled with the file's own line
numbers, so a failing block's traceback points at the Markdown line.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
DOC_FILES = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]
PYTHON_INFO = frozenset({"python", "py", "python3"})
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^\s`]*)")


@dataclass(frozen=True)
class Block:
    """One fenced code block: its info string, first code line (1-based) and source."""

    info: str
    line: int
    source: str


def fenced_blocks(text: str) -> list[Block]:
    """Every fenced block of a Markdown text, outermost only, in order."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        fence, info = m["fence"], m["info"].lower()
        start = i + 1
        i += 1
        body: list[str] = []
        while i < len(lines):
            close = re.match(r"^ {0,3}(`{3,}|~{3,})\s*$", lines[i])
            if close and close[1][0] == fence[0] and len(close[1]) >= len(fence):
                break
            body.append(lines[i])
            i += 1
        blocks.append(Block(info, start + 1, "\n".join(body) + "\n"))
        i += 1
    return blocks


def python_blocks(path: Path) -> list[Block]:
    """The ```python blocks of a Markdown file."""
    return [b for b in fenced_blocks(path.read_text("utf-8")) if b.info in PYTHON_INFO]


def test_extractor_finds_blocks() -> None:
    text = (
        "intro\n```python\na = 1\n```\n\n````markdown\n```python\nnot_run()\n```\n````\n"
        "~~~py\nb = a + 1\n~~~\n```console\n$ pip install freshlink\n```\n"
    )
    blocks = fenced_blocks(text)
    assert [b.info for b in blocks] == ["python", "markdown", "py", "console"]
    runnable = [b for b in blocks if b.info in PYTHON_INFO]
    assert [b.source for b in runnable] == ["a = 1\n", "b = a + 1\n"]
    assert [b.line for b in runnable] == [3, 12]


def close_leftovers(namespace: dict[str, object]) -> None:
    """Stop what a page's examples left running, even when a block failed half-way.

    Pages that use Redis start a throwaway ``RedisServer`` in their first block and close it
    in their last; if a block in between raises, the server process and the caches' channel
    threads would outlive the test without this.
    """
    from freshlink import Cache
    from freshlink.testing import RedisServer

    values = list(namespace.values())
    for value in values:
        if isinstance(value, Cache):
            with contextlib.suppress(Exception):
                value.close()
    for value in values:
        if isinstance(value, RedisServer):
            value.close()


_SAVE_AS = re.compile(r"Save this as `(\w+)\.py`")


def saved_as(text: str, block: Block) -> str | None:
    """The module name a page tells the reader to save ``block`` as, if it does."""
    before = text.splitlines()[: block.line - 1]
    paragraph = "\n".join(before[-6:])
    found = _SAVE_AS.findall(paragraph)
    return found[-1] if found else None


_STARTS_REDIS = re.compile(r"\b(RedisServer|RedisClusterSetup|RedisSentinelSetup)\(")


def page(path: Path) -> Any:
    """A page as a parameter, marked ``redis`` if its examples start a redis-server."""
    starts_redis = any(_STARTS_REDIS.search(b.source) for b in python_blocks(path))
    return pytest.param(path, marks=[pytest.mark.redis] if starts_redis else [])


@pytest.mark.parametrize(
    "path", [page(p) for p in DOC_FILES], ids=lambda p: str(p.relative_to(ROOT))
)
def test_code_blocks_run(path: Path) -> None:
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem}"}
    text = path.read_text("utf-8")
    modules: list[str] = []
    try:
        for block in python_blocks(path):
            # Pad so that line numbers in tracebacks are the Markdown file's line numbers.
            code = compile("\n" * (block.line - 1) + block.source, str(path), "exec")
            # A block the page says to save as a module is imported by later blocks as such.
            name = saved_as(text, block)
            if name is not None:
                module = types.ModuleType(name)
                sys.modules[name] = module
                modules.append(name)
            target = namespace if name is None else module.__dict__
            try:
                exec(code, target)
            except Exception as exc:
                exc.add_note(f"in the code block of {path.name} starting at line {block.line}")
                raise
            if name is not None:
                namespace.update(module.__dict__)  # for close_leftovers
    finally:
        close_leftovers(namespace)
        for name in modules:
            sys.modules.pop(name, None)


# [text](target.md) or [text](target.md#anchor): relative links to Markdown files only (no
# scheme such as https:, no absolute path). Inline code is removed first, so an example of the
# syntax inside backticks is not taken for a link.
_MD_LINK = re.compile(
    r"\]\((?P<target>(?![a-zA-Z][a-zA-Z0-9+.-]*:)(?!/)[^()\s#]+\.md)"  # not https:, not /x.md
    r"(?:#[^()\s]*)?\)"  # an optional #anchor
)
_INLINE_CODE = re.compile(r"(`+).*?\1", re.DOTALL)


def markdown_links(text: str) -> list[tuple[int, str]]:
    """(line, target) of every relative ``.md`` link outside fenced blocks and inline code."""
    fenced: set[int] = set()
    for block in fenced_blocks(text):
        fenced.update(range(block.line - 1, block.line + block.source.count("\n") + 1))
    links: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if number in fenced:
            continue
        for m in _MD_LINK.finditer(_INLINE_CODE.sub("", line)):
            links.append((number, m["target"]))
    return links


def test_link_extractor() -> None:
    text = (
        "See [Redis](redis.md) and [the ACL](security.md#a-minimal-redis-acl),\n"
        "not [a site](https://example.com/x.md), `[code](code.md)` or [anchor](#here).\n"
        "```markdown\n[in a fence](fenced.md)\n```\n[up](../README.md)\n"
    )
    assert markdown_links(text) == [(1, "redis.md"), (1, "security.md"), (6, "../README.md")]


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_markdown_links_resolve(path: Path) -> None:
    broken = [
        f"{path.name}:{line}: {target}"
        for line, target in markdown_links(path.read_text("utf-8"))
        if not (path.parent / target).is_file()
    ]
    assert not broken, "links to missing files:\n" + "\n".join(broken)


@pytest.mark.parametrize(
    "name",
    [
        "README.md",
        "docs/quickstart.md",
        "docs/coherence.md",
        "docs/redis.md",
        "docs/guarantees.md",
        "docs/scaling.md",
    ],
    ids=str,
)
def test_pages_have_examples(name: str) -> None:
    assert python_blocks(ROOT / name), f"{name} has no ```python block to test"


def test_quickstart_example_runs() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "token=bbb" in proc.stdout
    assert "loader calls: 2" in proc.stdout


def test_ci_script_is_executable() -> None:
    script = ROOT / ".ci" / "run"
    assert script.is_file()
    assert os.access(script, os.X_OK)
    assert "bash .ci/run" in (ROOT / "README.md").read_text("utf-8")


@pytest.mark.slow  # ~2-20 s; "slow" is not deselected by default, so this runs in CI
def test_sphinx_build_is_clean(tmp_path: Path) -> None:
    out = tmp_path / "html"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-b",
            "html",
            "-d",
            str(tmp_path / "doctrees"),
            str(DOCS),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
    for page in ("index", "quickstart", "coherence", "guarantees", "redis", "api"):
        assert (out / f"{page}.html").is_file()
    api = (out / "api.html").read_text("utf-8")
    # autodoc really imported and documented the public names.
    for name in ("freshlink.Cache", "freshlink.Local", "freshlink.handles.Cached", "Events"):
        assert name in api, name
    assert "ainvalidate" in api
    assert "TamperedPayloadError" in api
    for name in ("RedisServer", "RedisBackend", "BackendConformance"):
        assert name in api, name
