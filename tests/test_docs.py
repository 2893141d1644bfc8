"""README.md and docs/: every relative link and anchor resolves; the README
stays a landing page that reaches every page of docs/."""

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md"] + sorted(
    os.path.join("docs", name) for name in os.listdir(os.path.join(ROOT, "docs"))
    if name.endswith(".md"))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _prose(path):
    """The page's lines, code fences and inline code blanked out."""
    lines, fenced = [], False
    with open(os.path.join(ROOT, path)) as f:
        for line in f:
            if line.lstrip().startswith("```"):
                fenced = not fenced
                line = ""
            lines.append("" if fenced else re.sub(r"`[^`]*`", lambda m: " " * len(m.group()),
                                                  line))
    return lines


def anchors(path):
    """GitHub's anchors of a page's headings: lower case, punctuation dropped,
    spaces as hyphens, "-1", "-2", ... on repeats."""
    found, seen = set(), {}
    fenced = False
    with open(os.path.join(ROOT, path)) as f:
        for line in f:
            if line.lstrip().startswith("```"):
                fenced = not fenced
            match = re.match(r"^#{1,6} +(.*?) *#*$", line.rstrip("\n"))
            if fenced or not match:
                continue
            slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def test_anchor_rules_match_github():
    assert "throughput-benchmarkspipelinepy" in anchors("docs/several-devices.md")
    assert "interrupted-training-nan-reproducibility" in anchors("docs/reliability.md")


@pytest.mark.parametrize("page", PAGES)
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for number, line in enumerate(_prose(page), start=1):
        for target in LINK.findall(line):
            if re.match(r"^[a-z]+:", target):  # https:, mailto: ...
                continue
            path, _, anchor = target.partition("#")
            resolved = (os.path.normpath(os.path.join(os.path.dirname(page), path))
                        if path else page)
            if not os.path.exists(os.path.join(ROOT, resolved)):
                broken.append(f"{page}:{number}: {target} (no {resolved})")
            elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
                broken.append(f"{page}:{number}: {target} (no heading #{anchor})")
    assert not broken, "\n".join(broken)


def test_readme_is_a_landing_page_reaching_every_doc():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert readme.count("\n") <= 200
    linked = set(LINK.findall(readme))
    assert {p for p in PAGES if p.startswith("docs/")} <= linked
