"""What every contract returns about a thing it manages in an outside system."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ExternalResource:
    """A thing in an outside system: its identifier there, a link for people, and who owns it.

    ``owner`` is the portal's ownership marker written at creation (a label, a
    topic, a description line, depending on the system); ``None`` means the
    thing carries no marker, so the portal did not create it and must not adopt it.
    """

    system: str
    kind: str
    external_id: str
    name: str
    url: str = ""
    owner: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    # Things the system could not do that do not stop the step (a member with no account there, say);
    # the engine shows them on the step.
    warnings: tuple[str, ...] = ()
