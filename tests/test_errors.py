"""Errors answer with a page or a fragment and a status, never leaking internals."""

from __future__ import annotations

from tests.support import HTMX


def test_unexpected_error_is_a_500_without_its_text(app, client, caplog):
    @app.route("/boom")
    def boom():
        raise RuntimeError("database password is hunter2")

    resp = client.get("/boom")
    assert resp.status_code == 500
    assert "hunter2" not in resp.text and "Something went wrong" in resp.text
    assert "unhandled error on GET /boom" in caplog.text


def test_not_found_page_and_fragment(client, login, dev_member):
    c = login(dev_member)
    page = c.get("/t/dev/nothing-here")
    assert page.status_code == 404 and "<html" in page.text and "No such project" in page.text
    frag = c.get("/t/dev/nothing-here", headers=HTMX)
    assert frag.status_code == 404 and "<html" not in frag.text
    assert frag.headers["HX-Retarget"] == "#flash"


def test_oversized_body_is_refused(login, dev_member):
    resp = login(dev_member).post("/projects", data={"team": "dev", "name": "x", "description": "y" * 2_000_000})
    assert resp.status_code == 413


def test_security_headers_on_every_page(client):
    resp = client.get("/login")
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in resp.text  # no inline script anywhere


def test_hsts_only_behind_tls(app):
    from tests.conftest import make_app

    database, redis_url = app.config["SQLALCHEMY_DATABASE_URI"], app.config["PORTAL"].redis_url
    behind_tls = make_app(database, redis_url, public_url="https://portal.example.com").test_client()
    assert behind_tls.get("/healthz").headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    plain = make_app(database, redis_url, public_url="http://127.0.0.1:5000").test_client()
    assert "Strict-Transport-Security" not in plain.get("/healthz").headers
    assert "Strict-Transport-Security" in plain.get("/healthz", base_url="https://127.0.0.1").headers
