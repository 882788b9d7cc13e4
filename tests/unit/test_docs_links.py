"""The user documentation holds together: every relative link resolves, every docs page says what it is for.

Links: `[text](path)` and `[text](path#anchor)` in README.md and docs/*.md, outside code blocks and
inline code; the path must exist (relative to the page), and an anchor must name a heading of the target
page as GitHub renders it (lower case, punctuation dropped, spaces to hyphens, `-1` for a repeat).
Purpose line: a docs page's first line says what the page is for ("This page is for ..."), then its title.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Set

import pytest

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")
# written with the package re-layout (issue 22, its own branch); until it lands, links to it are not checked
PENDING = {ROOT / "docs" / "architecture.md"}


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code (links there are examples, not links)."""
    lines, in_code = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            in_code = not in_code
            continue
        if not in_code:
            lines.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(lines)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(page: Path) -> Set[str]:
    seen: Dict[str, int] = {}
    found = set()
    in_code = False
    for line in page.read_text().splitlines():
        if FENCE.match(line):
            in_code = not in_code
            continue
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match and not in_code:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(page: Path) -> List[str]:
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if resolved in PENDING and not resolved.exists():
            continue
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with the anchor #{anchor}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


@pytest.mark.parametrize("page", PAGES[1:], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_docs_page_says_first_what_it_is_for(page: Path) -> None:
    lines = page.read_text().splitlines() + ["", "", ""]
    assert lines[0].startswith("This page is for ") and len(lines[0].split()) >= 8, (
        f"{page.name}: the first line must say what the page is for (\"This page is for ...\"), got {lines[0]!r}"
    )
    assert lines[1] == "" and lines[2].startswith("# "), f"{page.name}: the purpose line, a blank line, then the title"


def test_the_checker_sees_a_broken_link_and_a_wrong_anchor(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# There: a page\n\n## The boundary's properties\n\n## Same\n\n## Same\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md#the-boundarys-properties) [ok](there.md#same-1) [ok](https://example.com/x#y)\n"
        "`[code](nowhere.md)`\n```\n[code](nowhere.md)\n```\n[gone](nowhere.md) [bad](there.md#nope)\n"
    )
    assert broken_links(page) == ["nowhere.md: no such file", "there.md#nope: no heading with the anchor #nope"]


def test_the_readme_is_first_contact_and_leads_to_every_docs_page() -> None:
    """About 200 lines (the reference lives in docs/), and every docs page is reachable from it."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250, "README.md grows past first contact: move the reference into docs/"
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in LINK.findall(prose(text))}
    assert [p.name for p in PAGES[1:] if p.resolve() not in linked] == []
