"""The documentation: a short README, docs/cli.md as the commands' own --help writes it, and no
relative link (or #anchor) in the README, ARCHITECTURE.md or docs/ that leads nowhere."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLI_PAGE = REPO / "docs" / "cli.md"
REGENERATE = ".venv/bin/cog -r docs/cli.md"

# [text](target) and ![alt](target); the target ends at whitespace (a title may follow) or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def documents() -> list[Path]:
    return [REPO / "README.md", REPO / "ARCHITECTURE.md", REPO / "apache" / "README.md",
            *sorted((REPO / "docs").glob("*.md"))]


def prose(text: str) -> str:
    """The text links are read from: code blocks, inline code and comments hold none."""
    for pattern in (COMMENT, FENCE, INLINE_CODE):
        text = pattern.sub("", text)
    return text


def anchors(page: Path) -> set[str]:
    """The #anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as
    hyphens, a repeated one numbered."""
    found: set[str] = set()
    text = FENCE.sub("", COMMENT.sub("", page.read_text(encoding="utf-8")))
    for heading in HEADING.findall(text):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")  # a code span's text stays
        candidate, number = slug, 0
        while candidate in found:
            number += 1
            candidate = f"{slug}-{number}"
        found.add(candidate)
    return found


def broken_links(page: Path) -> list[str]:
    """Each relative link of the page whose file, or whose heading, does not exist."""
    broken = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # https:, mailto:: not this repository's
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target} (no heading #{anchor} in {os.path.relpath(linked, page.parent)})")
    return broken


def relative_links(page: Path) -> list[str]:
    return [target for target in LINK.findall(prose(page.read_text(encoding="utf-8")))
            if not re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE)]


def test_every_relative_link_leads_to_a_file_and_heading_that_exist():
    pages = documents()
    assert len(pages) > 10 and all(page.exists() for page in pages)
    assert sum(len(relative_links(page)) for page in pages) > 50  # links were read: the check is no formality
    broken = {str(page.relative_to(REPO)): links for page in pages if (links := broken_links(page))}
    assert broken == {}


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## A heading, with `code`\n\n## A heading, with `code`\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[fine](other.md#a-heading-with-code) [second](other.md#a-heading-with-code-1) [here](#page)\n"
        "[gone](missing.md) [no heading](other.md#nowhere) [no anchor here](#nowhere)\n"
        "`[in code](missing-too.md)` [outside](https://example.com/missing.md)\n")
    assert broken_links(page) == ["missing.md (no such file)",
                                  "other.md#nowhere (no heading #nowhere in other.md)",
                                  "#nowhere (no heading #nowhere in page.md)"]


def test_the_readme_is_short_and_gives_the_two_commands():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    assert "scripts/run     # sets up everything missing and serves coretrack" in readme
    assert "scripts/test    # sets up what the tests need and runs the whole suite" in readme


def test_the_command_line_reference_is_what_the_commands_help_says():
    # A fresh process, without the settings of the environment: the help must not depend on them.
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("CORETRACK_") and name not in {"PORT", "COLUMNS", "LINES"}}
    checked = subprocess.run([sys.executable, "-m", "cogapp", "--check", str(CLI_PAGE.relative_to(REPO))],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, (
        f"docs/cli.md is not what the commands' --help says now; regenerate it with `{REGENERATE}` "
        f"and commit it.\n{checked.stdout}{checked.stderr}")
    page = CLI_PAGE.read_text(encoding="utf-8")
    assert "## coretrack send\n" in page and "--from-user" in page  # cog wrote the reference, not nothing
