"""Names of projects, applications and teams.

They become Git repository names, Kubernetes namespaces and Service names, and
Jenkins job names, so they must be RFC 1035 labels (a DNS-1123 label that
starts with a letter, as Kubernetes asks of Service names). Each problem gets
its own message, so that the user knows exactly what to change.
"""

from __future__ import annotations

import re

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
