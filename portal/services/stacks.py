"""The application templates (stacks) a new application can start from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stack:
    key: str
    label: str
    description: str


STACKS: tuple[Stack, ...] = (
    Stack("python-web", "Python web service", "A small Flask service with tests, served by gunicorn."),
    Stack("static-site", "Static site", "HTML and assets served by a tiny web server."),
)


def stack_choices() -> list[tuple[str, str]]:
    return [(s.key, s.label) for s in STACKS]


def is_stack(key: str) -> bool:
    return any(s.key == key for s in STACKS)
