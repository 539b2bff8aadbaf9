"""Names of projects, applications and teams.

They become Git repository names, Kubernetes namespaces and Service names, and
Jenkins job names, so they must be RFC 1035 labels (a DNS-1123 label that
starts with a letter, as Kubernetes asks of Service names). Each problem gets
its own message, so that the user knows exactly what to change.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

MAX_APPLICATION = 40
MAX_PROJECT = 30
MAX_TEAM = 20
_ALLOWED = re.compile(r"[a-z0-9-]")


def label_errors(value: str, max_length: int) -> list[str]:
    """Every reason ``value`` is not a valid name, or an empty list."""
    if value == "":
        return ["A name is required."]
    errors: list[str] = []
    if len(value) > max_length:
        errors.append(f"At most {max_length} characters; this one has {len(value)}.")
    bad = list(dict.fromkeys(c for c in value if not _ALLOWED.fullmatch(c)))
    if bad:
        shown = ", ".join(repr(c) for c in bad[:5])
        hint = " (use lowercase)" if any(c.isupper() for c in bad) else ""
        errors.append(f"Only lowercase letters, digits and '-' are allowed; found {shown}{hint}.")
    if value[0] not in bad and not ("a" <= value[0] <= "z"):  # a bad character was named already
        errors.append("Must start with a lowercase letter.")
    if value[-1] == "-":
        errors.append("Must end with a letter or a digit.")
    return errors


@dataclass(frozen=True)
class ResourceNames:
    """The deterministic names of everything provisioned for one application.

    Derived from team, project and application only, so that a step can always
    look for what it would create before creating it.
    """

    team: str
    project: str
    application: str

    @property
    def slug(self) -> str:
        return f"{self.project}-{self.application}"

    @property
    def source_repository(self) -> str:
        return self.slug

    @property
    def deployment_repository(self) -> str:
        return f"{self.slug}-deploy"

    @property
    def ci_job(self) -> str:
        return self.slug

    @property
    def image_repository(self) -> str:
        return f"{self.team}/{self.slug}"

    def namespace(self, environment: str = "dev") -> str:
        return dns_label(f"{self.team}-{self.slug}-{environment}")

    def delivery_application(self, environment: str = "dev") -> str:
        return dns_label(f"{self.team}-{self.slug}-{environment}")


def dns_label(value: str, limit: int = 63) -> str:
    """``value`` if it fits a DNS label, else a prefix of it and a short hash, still unique and stable."""
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    return f"{value[: limit - 9].rstrip('-')}-{digest}"
