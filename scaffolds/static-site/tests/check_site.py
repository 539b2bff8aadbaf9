"""Checks the site before it is built into an image. Standard library only.

    python tests/check_site.py public

Every HTML file must parse with its elements properly nested, and every local file an HTML
or CSS file refers to (links, stylesheets, scripts, images, CSS url()s) must exist inside the
site. Links to other sites are not followed. Exits 1 and lists each problem otherwise.
"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
# Elements whose end tag HTML lets an author leave out.
OPTIONAL_END = {"p", "li", "dt", "dd", "option", "optgroup", "tr", "td", "th", "thead", "tbody", "tfoot",
                "colgroup", "caption", "rt", "rp"}
REFERENCES = {"href", "src", "poster", "data"}
CSS_URL = re.compile(r"""url\(\s*(['"]?)([^'")]+)\1\s*\)""")


class PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[tuple[str, int]] = []
        self.references: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value and name in REFERENCES:
                self.references.append(value)
            elif value and name == "srcset":
                self.references.extend(c.split()[0] for c in value.split(",") if c.strip())
            elif value and name == "style":
                self.references.extend(m.group(2) for m in CSS_URL.finditer(value))
        if tag not in VOID:
            self.open.append((tag, self.getpos()[0]))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.open.pop()

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        open_tags = [t for t, _ in self.open]
        if tag not in open_tags:
            self.problems.append(f"line {self.getpos()[0]}: </{tag}> closes nothing")
            return
        while self.open:
            name, line = self.open.pop()
            if name == tag:
                return
            if name not in OPTIONAL_END:
                self.problems.append(f"line {line}: <{name}> is not closed before </{tag}>")

    def handle_data(self, data):
        if self.open and self.open[-1][0] == "style":
            self.references.extend(m.group(2) for m in CSS_URL.finditer(data))

    def finish(self) -> None:
        self.close()
        for name, line in self.open:
            if name not in OPTIONAL_END | {"html", "head", "body"}:
                self.problems.append(f"line {line}: <{name}> is never closed")


def local_target(root: Path, page: Path, reference: str) -> Path | None:
    """The file ``reference`` points at, or None for another site, a fragment or a scheme like mailto:."""
    parts = urlsplit(reference.strip())
    if parts.scheme or parts.netloc or not parts.path:
        return None
    path = unquote(parts.path)
    base = root if path.startswith("/") else page.parent
    target = (base / path.lstrip("/")).resolve()
    if path.endswith("/") or target.is_dir():
        target = target / "index.html"
    return target


def check(root: Path) -> list[str]:
    root = root.resolve()
    if not (root / "index.html").is_file():
        return [f"{root}: no index.html"]
    problems: list[str] = []
    for file in sorted(p for p in root.rglob("*") if p.suffix in {".html", ".htm", ".css"}):
        shown = file.relative_to(root).as_posix()
        text = file.read_text(encoding="utf-8")
        if file.suffix == ".css":
            references = [m.group(2) for m in CSS_URL.finditer(text)]
        else:
            parser = PageParser()
            parser.feed(text)
            parser.finish()
            problems.extend(f"{shown}: {p}" for p in parser.problems)
            references = parser.references
        for reference in references:
            target = local_target(root, file, reference)
            if target is None:
                continue
            if not target.is_relative_to(root):
                problems.append(f"{shown}: {reference} points outside the site")
            elif not target.is_file():
                problems.append(f"{shown}: {reference} does not exist")
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else "public")
    problems = check(root)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) in {root}", file=sys.stderr)
        return 1
    print(f"{root}: every page parses and every local reference exists")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
