"""Git's smart HTTP protocol under ``/git/<team>/<repository>.git/``.

A Git client authenticates with HTTP Basic: the portal username and a personal
access token with the git scope. No session, no CSRF token, no rate limit (the
token carries 256 random bits). Every answer is plain text, for a Git client
to show, never a page.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from portal.errors import DomainError
from portal.extensions import csrf, limiter
from portal.services import git_hosting, tokens

bp = Blueprint("git", __name__)

REALM = 'Basic realm="portal git"'


def _text(status: int, message: str, **headers: str) -> Response:
    return Response(message.rstrip("\n") + "\n", status=status, mimetype="text/plain", headers=headers)


@bp.route("/git/<team>/<repository>.git/<path:rest>", methods=["GET", "POST"])
@csrf.exempt
@limiter.exempt
def smart_http(team: str, repository: str, rest: str):
    credentials = request.authorization
    user = None
    if credentials is not None and credentials.type == "basic" and credentials.username and credentials.password:
        user = tokens.authenticate(credentials.username, credentials.password, scope="git")
    if user is None:
        return _text(401, "Sign in with your portal username and a personal access token (scope git) as the "
                          "password; make one on your account page.", **{"WWW-Authenticate": REALM})
    environ = {**request.environ, "PATH_INFO": "/" + rest}
    try:
        answer = git_hosting.serve(user, team, repository, environ)
    except DomainError as exc:
        return _text(exc.status, exc.message)
    return Response(answer.body, status=answer.status, headers=answer.headers)
