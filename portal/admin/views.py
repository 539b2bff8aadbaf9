"""Admin pages: users, clusters, kiosk tokens, the audit trail. Every service call checks for an admin."""

from __future__ import annotations

from flask import Blueprint, current_app, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, SelectMultipleField, StringField, TextAreaField
from wtforms.widgets import CheckboxInput, ListWidget
from wtforms.validators import DataRequired, Length

from portal.errors import ValidationFailed
from portal.forms import show_errors
from portal.htmx import is_htmx, redirect_to, render
from portal.listing_args import page_arg, text_arg
from portal.services import accounts, audit, clusters, kiosks, teams
from portal.services.access import require_admin

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
@login_required
def admins_only():
    require_admin(current_user)


class ClusterForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=40)])
    api_url = StringField("API URL", validators=[DataRequired(), Length(max=255)])
    ca_pem = TextAreaField("CA certificate (PEM)", validators=[Length(max=20000)])
    # Write-only: never filled back into the form.
    token = PasswordField("Bearer token", validators=[Length(max=20000)])
    kubeconfig = TextAreaField("or a kubeconfig", validators=[Length(max=100000)])
    verify_tls = BooleanField("Verify the API server's TLS certificate", default=True)
    is_central = BooleanField("Central cluster (runs Argo CD)")
    team_names = SelectMultipleField("Teams deploying here", validate_choice=False)


def _cluster_form(**kwargs) -> ClusterForm:
    form = ClusterForm(**kwargs)
    form.team_names.choices = teams.all_team_names()
    return form


def _cluster_input(form: ClusterForm, name: str | None = None) -> clusters.ClusterInput:
    return clusters.ClusterInput(
        name=name or form.name.data, api_url=form.api_url.data, is_central=form.is_central.data,
        team_names=list(form.team_names.data or []), ca_pem=form.ca_pem.data or "", token=form.token.data or "",
        kubeconfig=form.kubeconfig.data or "", verify_tls=form.verify_tls.data,
    )


@bp.route("/users")
def users():
    q = text_arg()
    page = accounts.list_users(current_user, q=q, page=page_arg(), per_page=current_app.config["PORTAL"].page_size)
    return render("admin/users.html", block="user_table", page=page, q=q)


@bp.route("/users/<int:user_id>/admin", methods=["POST"])
def set_admin(user_id: int):
    user = accounts.set_admin(current_user, user_id, request.form.get("is_admin") == "1")
    return render("admin/_user_row.html", user=user)


@bp.route("/clusters")
def clusters_index():
    return render("admin/clusters.html", clusters=clusters.list_clusters(current_user), form=_cluster_form())


@bp.route("/clusters", methods=["POST"])
def clusters_create():
    form = _cluster_form()
    if form.validate_on_submit():
        try:
            clusters.register_cluster(current_user, _cluster_input(form))
        except ValidationFailed as exc:
            show_errors(form, exc)
        else:
            return redirect_to(url_for("admin.clusters_index"))
    return render("admin/clusters.html", clusters=clusters.list_clusters(current_user), form=form, status=422)


@bp.route("/clusters/<name>", methods=["GET", "POST"])
def cluster_edit(name: str):
    cluster = clusters.get_cluster(current_user, name)
    if request.method == "GET":
        form = _cluster_form(obj=cluster)
        form.team_names.data = [t.name for t in cluster.teams]
        return render("admin/cluster_edit.html", cluster=cluster, form=form)
    form = _cluster_form()
    form.name.data = cluster.name
    if form.validate_on_submit():
        try:
            clusters.update_cluster(current_user, name, _cluster_input(form, name))
        except ValidationFailed as exc:
            show_errors(form, exc)
        else:
            return redirect_to(url_for("admin.clusters_index"))
    return render("admin/cluster_edit.html", cluster=cluster, form=form, status=422)


@bp.route("/clusters/<name>/check", methods=["POST"])
def cluster_check(name: str):
    return render("admin/_cluster_check.html", cluster=clusters.check_cluster(current_user, name))


@bp.route("/clusters/<name>/delete", methods=["POST"])
def cluster_delete(name: str):
    clusters.delete_cluster(current_user, name)
    return redirect_to(url_for("admin.clusters_index"))


class KioskForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=kiosks.MAX_NAME)])
    team_names = SelectMultipleField("Teams it shows", validate_choice=False,
                                     widget=ListWidget(prefix_label=False), option_widget=CheckboxInput())


def _kiosks_page(form: KioskForm | None = None, new_token: kiosks.NewKioskToken | None = None, status: int = 200):
    if form is None:
        form = KioskForm(formdata=None)
    form.team_names.choices = teams.all_team_names()
    kiosk_url = ""
    if new_token is not None:
        base = current_app.config["PORTAL"].public_url.rstrip("/")
        kiosk_url = base + url_for("boards.kiosk", token=new_token.secret)
    resp = render("admin/kiosks.html", block="kiosks", tokens=kiosks.list_kiosk_tokens(current_user), form=form,
                  new_token=new_token, kiosk_url=kiosk_url, status=status)
    if new_token is not None:
        resp.headers["Cache-Control"] = "no-store"  # the only copy of the token must not linger in a cache
    return resp


@bp.route("/kiosks")
def kiosks_index():
    return _kiosks_page()


@bp.route("/kiosks", methods=["POST"])
def kiosks_create():
    form = KioskForm()
    form.team_names.choices = teams.all_team_names()
    if form.validate_on_submit():
        try:
            new_token = kiosks.create_kiosk_token(current_user, form.name.data, list(form.team_names.data or []))
        except ValidationFailed as exc:
            show_errors(form, exc)
        else:
            # Shown in the answer, not after a redirect: the token must never travel through the session.
            return _kiosks_page(new_token=new_token, status=201)
    return _kiosks_page(form, status=422)


@bp.route("/kiosks/<int:token_id>/revoke", methods=["POST"])
def kiosk_revoke(token_id: int):
    token = kiosks.revoke_kiosk_token(current_user, token_id)
    if is_htmx():
        return render("admin/_kiosk_row.html", token=token)
    return redirect_to(url_for("admin.kiosks_index"))


@bp.route("/audit")
def audit_log():
    action = text_arg("action")
    page = audit.list_events(current_user, page=page_arg(), action=action)
    return render("admin/audit.html", block="audit_table", page=page, action=action)
