import app as service


def test_index_names_the_application(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.get_json()["application"] == service.APPLICATION
    assert service.APPLICATION


def test_liveness_answers(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_ready_when_every_check_passes(app, client):
    app.config["READINESS_CHECKS"] = {"database": lambda: True}
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready"}


def test_not_ready_while_a_check_fails_or_raises(app, client):
    def broken():
        raise ConnectionError("no route to the database")

    app.config["READINESS_CHECKS"] = {"database": broken, "cache": lambda: False, "queue": lambda: True}
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "failing": ["cache", "database"]}


def test_unknown_path_is_not_found(client):
    assert client.get("/no-such-page").status_code == 404
