"""Webhooks from outside systems. No session and no CSRF token: each delivery proves itself with its secret."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from portal.extensions import csrf, limiter
from portal.services import hooks

bp = Blueprint("hooks", __name__)


@bp.route("/hooks/gitlab", methods=["POST"])
@csrf.exempt
@limiter.exempt
def gitlab():
    outcome = hooks.receive_gitlab(request.headers, request.get_data(cache=False))
    return jsonify(outcome.body()), outcome.status
