"""Sign up, sign in, sign out, the waiting room, and the account page with its personal access tokens."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from portal.auth.forms import LoginForm, PasswordForm, SignupForm
from portal.auth.session import safe_next
from portal.errors import ValidationFailed
from portal.extensions import limiter
from portal.forms import show_errors
from portal.htmx import is_htmx, redirect_to, render
from portal.services import accounts, teams, tokens

bp = Blueprint("auth", __name__)


class TokenForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=tokens.MAX_NAME)])


def _login_limit() -> str:
    return current_app.config["PORTAL"].login_rate_limit


def _login_key() -> str:
    # Per client address and username: one attacker cannot lock everyone out, nor guess one user fast.
    return f"{request.remote_addr}|{(request.form.get('username') or '').strip()[:40]}"


@bp.route("/signup", methods=["GET", "POST"])
def signup():
    if current_user.is_authenticated:
        return redirect_to(url_for("dashboard.index"))
    form = SignupForm()
    form.team.choices = teams.all_team_names()
    status = 200
    if form.validate_on_submit():
        try:
            user = accounts.sign_up(
                accounts.SignUp(form.username.data, form.email.data, form.password.data, form.team.data),
                approval_required=current_app.config["PORTAL"].team_approval,
            )
        except ValidationFailed as exc:
            show_errors(form, exc)
            status = 422
        else:
            _sign_in(user)
            return redirect_to(url_for("dashboard.index"))
    elif form.is_submitted():
        status = 422
    return render("auth/signup.html", form=form, status=status)


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, key_func=_login_key, methods=["POST"], deduct_when=lambda r: r.status_code == 401)
def login():
    next_url = safe_next(request.args.get("next"))
    if current_user.is_authenticated:
        return redirect_to(next_url)
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        user = accounts.authenticate(form.username.data, form.password.data)
        if user is not None:
            _sign_in(user)
            return redirect_to(next_url)
        form.form_errors.append("Wrong username or password.")
        status = 401
    elif form.is_submitted():
        status = 422
    return render("auth/login.html", form=form, next_url=next_url, status=status)


def _sign_in(user) -> None:
    """A new session for the user: whatever the browser's session held before (a value planted by someone
    else, an old CSRF token) is dropped, so no one can fix a session and wait for its owner to sign in."""
    session.clear()
    login_user(user)


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    accounts.record_logout(current_user)
    logout_user()
    session.clear()  # nothing of the signed-in session outlives it, its CSRF token included
    return redirect_to(url_for("auth.login"))


@bp.route("/pending")
@login_required
def pending():
    if not current_user.is_pending:
        return redirect_to(url_for("dashboard.index"))
    return render("auth/pending.html", memberships=current_user.memberships)


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account():
    form = PasswordForm()
    status = 200
    if form.validate_on_submit():
        try:
            accounts.change_password(current_user, form.current_password.data, form.new_password.data)
        except ValidationFailed as exc:
            show_errors(form, exc)
            status = 422
        else:
            flash("Password changed.", "success")
            return redirect_to(url_for("auth.account"))
    elif form.is_submitted():
        status = 422
    return _account_page(password_form=form, status=status)


def _account_page(password_form: PasswordForm | None = None, token_form: TokenForm | None = None,
                  new_token: tokens.NewToken | None = None, status: int = 200, block: str | None = None):
    resp = render("auth/account.html", block=block, status=status,
                  form=password_form or PasswordForm(formdata=None), token_form=token_form or TokenForm(formdata=None),
                  new_token=new_token, tokens=tokens.list_tokens(current_user),
                  git_base_url=current_app.config["PORTAL"].public_url.rstrip("/") + "/git")
    if new_token is not None:
        resp.headers["Cache-Control"] = "no-store"  # the only copy of the token must not linger in a cache
    return resp


@bp.route("/account/tokens", methods=["POST"])
@login_required
def create_token():
    form = TokenForm()
    if form.validate_on_submit():
        try:
            new_token = tokens.create_token(current_user, form.name.data)
        except ValidationFailed as exc:
            show_errors(form, exc)
        else:
            # Shown in the answer, not after a redirect: the token must never travel through the session.
            return _account_page(new_token=new_token, status=201, block="tokens")
    return _account_page(token_form=form, status=422, block="tokens")


@bp.route("/account/tokens/<int:token_id>/revoke", methods=["POST"])
@login_required
def revoke_token(token_id: int):
    token = tokens.revoke_token(current_user, token_id)
    if is_htmx():
        return render("auth/_token_row.html", token=token)
    flash(f"Token {token.name} revoked.", "success")
    return redirect_to(url_for("auth.account"))
