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
