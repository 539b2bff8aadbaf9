"""Team boards: a team's board page, its kiosk layout for wall screens (``?kiosk=1``), and kiosk URLs that a
read-only token opens without a session, cycling through the token's teams.

Every poll swaps the whole board region (outerHTML): a screen left on for days holds one board, never a
growing list of them. The next team's index travels in the region's own hx-get URL.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, request, url_for
from flask_login import current_user, login_required
from werkzeug.exceptions import HTTPException, InternalServerError

from portal.errors import DomainError, NotFound
from portal.htmx import render
from portal.services import boards, kiosks

bp = Blueprint("boards", __name__)
log = logging.getLogger(__name__)

MIN_EVERY, MAX_EVERY = 2, 3600  # seconds between two polls (and two teams of a kiosk)


def _every() -> int:
    default = current_app.config["PORTAL"].kiosk_cycle_seconds
    try:
        every = int(request.args.get("every", default))
    except ValueError:
        every = default
    return max(MIN_EVERY, min(MAX_EVERY, every))


def _timeout_ms(every: int) -> int:
    """How long a poll may take before it counts as failed: under the interval, so that polls never pile up."""
    return min(max(every - 1, 2), 10) * 1000


def _render(board: boards.TeamBoard, kiosk: bool, poll_url: str, every: int, position: str = "") -> Response:
    return render("boards/kiosk.html" if kiosk else "boards/show.html", block="board", board=board, kiosk=kiosk,
                  poll_url=poll_url, every=every, timeout_ms=_timeout_ms(every), position=position)


@bp.route("/teams/<team>/board")
@login_required
def team_board(team: str):
    board = boards.team_board(current_user, team)
    every = _every()
    kiosk = request.args.get("kiosk") == "1"
    poll_url = url_for("boards.team_board", team=board.team_name, kiosk="1" if kiosk else None, every=every)
    return _render(board, kiosk, poll_url, every)


@bp.route("/kiosk/<token>")
def kiosk(token: str):
    """A wall screen's view through a kiosk token: no session, read-only, 404 for a bad or revoked token."""
    try:
        viewer = kiosks.resolve(token)
        if viewer is None or not viewer.team_names:
            raise NotFound("No such page.")
        count = len(viewer.team_names)
        index = request.args.get("team", "0")
        index = int(index) % count if index.isdigit() else 0
        board = boards.team_board(viewer, viewer.team_names[index])
        every = _every()
        poll_url = url_for("boards.kiosk", token=token, team=(index + 1) % count, every=every)
        resp = _render(board, True, poll_url, every, position=f"{index + 1} of {count}" if count > 1 else "")
    except (DomainError, HTTPException):
        raise
    except Exception:
        # The app's own handler would log the path, and the path holds the token.
        log.exception("the kiosk board failed")
        raise InternalServerError() from None
    # The URL is a credential: kept out of caches and out of the Referer of the page's own requests.
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp
