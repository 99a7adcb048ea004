"""The documentation's relative links and images resolve: README.md (the front page) and every page of docs/.

Each `[text](target)`, `![alt](target)` and HTML `src=`/`href=` outside code names a file that exists, relative to
its page, and an anchor (`page.md#anchor`, or `#anchor` on the same page) names a heading of that page, slugged as
GitHub does. Web addresses are not fetched. A link that leaves the repository may only go to the workspace's
`shared/` folder beside it (../shared/ARTICLE.md), and is checked where that folder is present.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from conftest import REPO, doc_pages

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", flags=re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']+)["']""")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", flags=re.MULTILINE)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", flags=re.IGNORECASE)  # https:, mailto:, ...


def prose(text: str) -> str:
    """The page without its fenced code blocks (their `#` comments are no headings, their text no links)."""
    return FENCE.sub("", text)


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of `path`: the heading's text without markup, lower case, anything but
    letters, digits, spaces, `-` and `_` dropped, spaces as `-`; a repeated slug gets -1, -2, ..."""
    seen: Counter[str] = Counter()
    found = set()
    for heading in HEADING.findall(prose(path.read_text(encoding="utf-8"))):
        text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
        text = re.sub(r"[`*]|(?<!\w)_|_(?!\w)", "", text)  # code and emphasis markers
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        found.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return found


def test_every_relative_link_and_image_of_the_documentation_resolves() -> None:
    pages = doc_pages()
    assert len(pages) > 1 and all(path.is_file() for path in pages), pages
    shared = REPO.parent / "shared"
    problems, checked = [], 0
    for page in pages:
        text = CODE_SPAN.sub("code", prose(page.read_text(encoding="utf-8")))
        for target in LINK.findall(text) + HTML.findall(text):
            if EXTERNAL.match(target):
                continue
            checked += 1
            where = f"{page.relative_to(REPO)}: ({target})"
            name, _, anchor = target.partition("#")
            file = (page.parent / name).resolve() if name else page
            if not file.is_relative_to(REPO):
                if not file.is_relative_to(shared.resolve()):
                    problems.append(f"{where} leaves the repository (only ../shared/ beside it may be linked)")
                elif shared.is_dir() and not file.is_file():
                    problems.append(f"{where}: no such file in the workspace's shared/")
                continue
            if not file.is_file():
                problems.append(f"{where}: no such file")
            elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
                problems.append(f"{where}: no heading #{anchor} in {file.relative_to(REPO)}")
    assert checked, "no relative link found: the patterns no longer match the pages"
    assert problems == [], "\n".join(problems)
