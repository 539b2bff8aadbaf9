"""A build's console as the log panel shows it: numbered lines, a text filter with highlights, the last lines
first with "load older", a live tail while the build runs, and a streamed download.

The console is the portal's own copy (``BuildLogChunk``), kept as the build runs, so all of this works after
the build pod is gone and the CI server has rotated its logs. Positions are characters of the whole console,
as the chunks are stored; a tail reads only the chunks past its position and hands on whole lines only (the
rest of a line still being written comes with the next poll), so a line is never shown cut or twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import func, select

from integrations.logs import mark_matches
from portal.errors import ValidationFailed
from portal.extensions import db
from portal.models import Application, BuildLogChunk, User
from portal.services.builds import full_log, get_build

LINES = 1000  # shown at first, and per "load older"
MAX_TEXT = 200


@dataclass(frozen=True)
class ConsoleLine:
    number: int
    text: str
    highlighted: str = ""  # the text with matches between MARK_START and MARK_END, when filtered


@dataclass(frozen=True)
class ConsolePage:
    lines: list[ConsoleLine]
    older: int | None  # the first line shown, when earlier lines match too: "load older" asks before it
    offset: int  # characters of the console read: the next tail starts here
    next_number: int  # the number the next line will have
    over: bool  # the build is over: nothing more will come


def _check(text: str) -> str:
    text = text.strip()
    if len(text) > MAX_TEXT:
        raise ValidationFailed({"q": [f"At most {MAX_TEXT} characters."]})
    return text


def _numbered(lines: list[str], first: int, text: str) -> list[ConsoleLine]:
    if not text:
        return [ConsoleLine(first + i, line) for i, line in enumerate(lines)]
    found = []
    for i, line in enumerate(lines):
        marked = mark_matches(text, line)
        if marked:
            found.append(ConsoleLine(first + i, line, marked))
    return found


def _whole_lines(text: str, over: bool) -> tuple[list[str], int]:
    """The lines of ``text`` and how many characters they take: all of it once the build is over, else up to
    the last line break."""
    if not over:
        text = text[:text.rfind("\n") + 1]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines, len(text)


def console(actor: User, app: Application, number: int, text: str = "", before: int | None = None,
            limit: int = LINES) -> ConsolePage:
    """The last ``limit`` lines (matching ``text``), or those before line ``before``."""
    text = _check(text)
    build = get_build(actor, app, number)
    over = build.state.over
    lines, read = _whole_lines(full_log(build), over)
    found = _numbered(lines, 1, text)
    if before is not None:
        found = [line for line in found if line.number < before]
    shown = found[-limit:] if limit else []
    older = shown[0].number if shown and len(found) > len(shown) else None
    return ConsolePage(shown, older, read, len(lines) + 1, over)


def tail(actor: User, app: Application, number: int, offset: int, next_number: int, text: str = "") -> ConsolePage:
    """The whole lines written since character ``offset``, numbered from ``next_number``."""
    text = _check(text)
    build = get_build(actor, app, number)
    over = build.state.over
    chunks = db.session.execute(select(BuildLogChunk.offset, BuildLogChunk.text).where(
        BuildLogChunk.build_id == build.id, BuildLogChunk.offset + func.length(BuildLogChunk.text) > offset)
        .order_by(BuildLogChunk.offset)).all()
    lines, read = _whole_lines("".join(t[max(0, offset - start):] for start, t in chunks), over)
    return ConsolePage(_numbered(lines, next_number, text), None, offset + read, next_number + len(lines), over)


def lines(actor: User, app: Application, number: int, text: str = "") -> Iterator[ConsoleLine]:
    """Every line (matching ``text``) of the console as it is now, read a few chunks at a time: checked now,
    read as the caller iterates."""
    text = _check(text)
    build = get_build(actor, app, number)
    build_id = build.id

    def read() -> Iterator[ConsoleLine]:
        rest, first, position = "", 1, -1
        while True:  # a few chunks per query: no cursor is held open between the response's writes
            chunks = db.session.execute(select(BuildLogChunk.offset, BuildLogChunk.text).where(
                BuildLogChunk.build_id == build_id, BuildLogChunk.offset > position)
                .order_by(BuildLogChunk.offset).limit(50)).all()
            if not chunks:
                break
            for position, chunk in chunks:
                pieces = (rest + chunk).split("\n")
                rest = pieces.pop()
                yield from _numbered(pieces, first, text)
                first += len(pieces)
        if rest:
            yield from _numbered([rest], first, text)

    return read()
