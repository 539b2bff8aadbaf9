"""Log store contract: query and tail an application's logs (Elasticsearch, OpenSearch, the pod log API)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

# Highlights come between two private-use characters: not markup, not whitespace (the engines trim control
# characters from a highlight's ends, as Java's String.trim does), and all but absent from real logs.
MARK_START, MARK_END = "\ue000", "\ue001"


@dataclass(frozen=True)
class LogQuery:
    """What to read. ``namespaces`` is set by the portal's service from what the user may see, never by the user."""

    namespaces: tuple[str, ...]
    since: datetime | None = None
    until: datetime | None = None
    text: str = ""
    pods: tuple[str, ...] = ()
    containers: tuple[str, ...] = ()
    streams: tuple[str, ...] = ()
    levels: tuple[str, ...] = ()
    limit: int = 200


@dataclass(frozen=True)
class LogLine:
    timestamp: datetime
    message: str
    namespace: str
    pod: str
    container: str
    stream: str = "stdout"
    level: str = ""
    highlighted: str = ""  # the message with matches between log_search.MARK_START and MARK_END, if any
    sort: tuple = ()


@dataclass(frozen=True)
class LogPage:
    lines: list[LogLine]
    cursor: tuple | None = None
    notes: list[str] = field(default_factory=list)


@runtime_checkable
class LogStore(Protocol):
    system: str

    def query(self, query: LogQuery, before: tuple | None = None) -> LogPage:
        """The newest ``limit`` lines matching, older than ``before`` when given (load older)."""
        ...

    def tail(self, query: LogQuery, after: tuple | None) -> LogPage:
        """Lines newer than ``after``, in order, each exactly once; without a cursor, the newest page."""
        ...

    def forward(self, query: LogQuery, after: tuple | None = None) -> LogPage:
        """Lines oldest first, from the start of the query's range or after ``after`` (a download, page by page)."""
        ...


# --- levels and text, for the stores that filter lines themselves (the pod log API, build consoles) -----------

# A level as people choose it, and the spellings programs write it with: a search store matches any of them.
LEVELS: dict[str, tuple[str, ...]] = {
    "error": ("error", "ERROR", "Error", "err", "ERR", "fatal", "FATAL", "Fatal", "critical", "CRITICAL", "crit",
              "CRIT", "panic", "PANIC", "severe", "SEVERE", "E"),
    "warn": ("warn", "WARN", "Warn", "warning", "WARNING", "Warning", "W"),
    "info": ("info", "INFO", "Info", "notice", "NOTICE", "I"),
    "debug": ("debug", "DEBUG", "Debug", "trace", "TRACE", "Trace", "D"),
}
_SPELLINGS = {spelling.lower(): name for name, spellings in LEVELS.items()
              for spelling in spellings if len(spelling) > 1}
_LEVEL_KEY = re.compile(r'"(?:level|lvl|severity|loglevel)"\s*:\s*"([A-Za-z]+)"|\b(?:level|lvl)=([A-Za-z]+)',
                        re.IGNORECASE)


def canonical_level(value: str) -> str:
    """A level as a program wrote it (``WARNING``, ``err``) by LEVELS' name for it, or as it is if unknown."""
    return _SPELLINGS.get(value.lower(), value) if len(value) > 1 else {"E": "error", "W": "warn", "I": "info",
                                                                         "D": "debug"}.get(value, value)


def level_of(message: str) -> str:
    """The level a line states, as one of LEVELS' names, or "": a JSON ``"level": "..."`` (or lvl, severity) or a
    logfmt ``level=...``, else a level word (``ERROR``, ``error`` or ``Error``) first on the line, after any
    timestamps: ``ERROR ...``, ``[warn] ...``, ``2026-12-07 10:00:00,123 INFO ...``."""
    found = _LEVEL_KEY.search(message[:500])
    if found:
        return _SPELLINGS.get((found.group(1) or found.group(2)).lower(), "")
    for token in message[:120].split()[:4]:
        word = token.strip("[]()<>{}:|-=,.")
        if any(ch.isdigit() for ch in word) or not word:
            continue  # a timestamp, a thread number
        return _SPELLINGS.get(word.lower(), "") if word.isupper() or word.islower() or word.istitle() else ""
    return ""


def phrase_of(text: str) -> str | None:
    """What a person's text is searched for: the phrase inside double quotes, or None for every word of it.
    One rule for the search engines (``log_search.text_clause``) and for the stores that match lines here."""
    text = text.strip()
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else None


def mark_matches(text: str, message: str) -> str:
    """The message with every match of ``text`` between MARK_START and MARK_END (as a search engine highlights), or
    "" when it does not match: a quoted text must occur as it is, otherwise every word, in any order."""
    phrase = phrase_of(text)
    words = text.split() if phrase is None else ([phrase] if phrase else [])
    lowered = message.lower()
    if not words or not all(word.lower() in lowered for word in words):
        return ""
    pattern = re.compile("|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True)), re.IGNORECASE)
    return pattern.sub(lambda m: f"{MARK_START}{m.group(0)}{MARK_END}", message)
