"""Jobs about the job system itself."""

from __future__ import annotations

import os

from jobs import in_app_context


@in_app_context
def ping(token: str) -> dict[str, object]:
    """Answer with the process that ran the job: proves a worker is alive and has the app loaded."""
    from flask import current_app

    return {"token": token, "pid": os.getpid(), "app": current_app.name}
