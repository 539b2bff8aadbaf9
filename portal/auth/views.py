"""Sign up, sign in, sign out, the waiting room, and the account page."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, request, url_for
from flask_login import current_user, login_required, login_user, logout_user

from portal.auth.forms import LoginForm, PasswordForm, SignupForm
from portal.auth.session import safe_next
from portal.errors import ValidationFailed
from portal.extensions import limiter
from portal.forms import show_errors
from portal.htmx import redirect_to, render
from portal.services import accounts, teams

bp = Blueprint("auth", __name__)


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
            login_user(user)
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
            login_user(user)
            return redirect_to(next_url)
        form.form_errors.append("Wrong username or password.")
        status = 401
    elif form.is_submitted():
        status = 422
    return render("auth/login.html", form=form, next_url=next_url, status=status)


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    accounts.record_logout(current_user)
    logout_user()
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
    return render("auth/account.html", form=form, status=status)
