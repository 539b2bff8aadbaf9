"""A build's console as a log panel: numbered lines, a text filter with highlights, load older, a live tail that
never cuts a line nor shows one twice while chunks arrive mid-line, a streamed download; all from the portal's
own copy, for the team only."""

from __future__ import annotations

import json

import pytest

from portal.errors import NotFound, ValidationFailed
from portal.extensions import db
from portal.models import Build, BuildLogChunk, BuildState
from portal.services import build_console
from tests.factories import ApplicationFactory

HX = {"HX-Request": "true"}


@pytest.fixture
def application(app):
    return ApplicationFactory()


@pytest.fixture
def build(application):
    build = Build(application_id=application.id, number=1, commit_sha="c" * 40, state=BuildState.RUNNING)
    db.session.add(build)
    db.session.commit()
    return build


def write(build: Build, text: str) -> None:
    """Append to the console as the build follower does: a chunk at the console's end, cut anywhere."""
    db.session.add(BuildLogChunk(build_id=build.id, offset=build.log_size, text=text))
    build.log_size += len(text)
    db.session.commit()


def url(application, path=""):
    return f"/t/{application.team.name}/{application.project.name}/{application.name}/builds/1{path}"


def test_the_last_lines_come_first_and_load_older_continues_to_the_first(application, build, dev_member):
    write(build, "".join(f"step {n}\n" for n in range(1, 2501)))
    page = build_console.console(dev_member, application, 1)
    assert [line.number for line in page.lines] == list(range(1501, 2501)) and page.older == 1501
    older = build_console.console(dev_member, application, 1, before=page.older)
    assert [line.text for line in older.lines] == [f"step {n}" for n in range(501, 1501)]
    first = build_console.console(dev_member, application, 1, before=older.older)
    assert [line.number for line in first.lines] == list(range(1, 501)) and first.older is None


def test_a_filter_keeps_the_numbers_of_the_whole_console_and_highlights(application, build, dev_member):
    write(build, "compiling\nERROR: test_cart failed\nok\nerror in <script>\n")
    page = build_console.console(dev_member, application, 1, text="error")
    assert [(line.number, line.highlighted) for line in page.lines] == [
        (2, "\ue000ERROR\ue001: test_cart failed"), (4, "\ue000error\ue001 in <script>")]
    assert build_console.console(dev_member, application, 1, text='"failed test"').lines == []  # words, not phrase
    assert len(build_console.console(dev_member, application, 1, text='failed test').lines) == 1
    with pytest.raises(ValidationFailed):
        build_console.console(dev_member, application, 1, text="x" * 201)


def test_the_tail_hands_on_whole_lines_only_each_once(application, build, dev_member):
    write(build, "one\ntw")
    page = build_console.console(dev_member, application, 1)
    assert [line.text for line in page.lines] == ["one"] and (page.offset, page.next_number) == (4, 2)
    assert build_console.tail(dev_member, application, 1, page.offset, page.next_number).lines == []
    write(build, "o\nthr")
    second = build_console.tail(dev_member, application, 1, page.offset, page.next_number)
    assert [(line.number, line.text) for line in second.lines] == [(2, "two")] and not second.over
    write(build, "ee")  # the build ends on a line without its line break
    build.state = BuildState.SUCCEEDED
    db.session.commit()
    last = build_console.tail(dev_member, application, 1, second.offset, second.next_number)
    assert [(line.number, line.text) for line in last.lines] == [(3, "three")] and last.over
    assert build_console.tail(dev_member, application, 1, last.offset, last.next_number).lines == []


def test_the_panel_follows_a_running_build_and_stops_when_it_is_over(login, application, build, dev_member):
    write(build, "starting\n")
    c = login(dev_member)
    page = c.get(url(application))
    assert page.status_code == 200 and 'id="L1"' in page.text and 'id="console-tail"' in page.text
    assert 'after=9' in page.text and "line=2" in page.text
    write(build, "<b>built</b>\n")
    tail = c.get(url(application, "/log?after=9&line=2"), headers=HX)
    assert tail.status_code == 200 and "&lt;b&gt;built&lt;/b&gt;" in tail.text and 'id="L2"' in tail.text
    assert "<b>built" not in tail.text
    build.state = BuildState.FAILED
    db.session.commit()
    end = c.get(url(application, f"/log?after={build.log_size}&line=3"), headers=HX)
    assert end.status_code == 286 and "The build is over" in end.text
    paused = c.get(url(application) + "?live=0", headers=HX)
    assert 'id="console-tail"' not in paused.text and 'id="console-panel"' in paused.text
    filtered = c.get(url(application) + "?q=built", headers=HX).text
    assert "<b>" not in filtered and "&lt;b&gt;<mark>built</mark>&lt;/b&gt;" in filtered
    assert 'id="L1"' not in filtered


def test_the_download_streams_the_console_or_the_lines_matching(login, application, build, dev_member):
    for n in range(0, 300):
        write(build, f"line {n} " + ("warn" if n % 100 == 0 else "fine") + ("\n" if n % 3 == 2 else " + "))
    write(build, "last, no line break")
    c = login(dev_member)
    text = c.get(url(application, "/log/download"))
    assert text.status_code == 200 and text.mimetype == "text/plain"
    whole = "".join(chunk.text for chunk in db.session.scalars(
        db.select(BuildLogChunk).where(BuildLogChunk.build_id == build.id).order_by(BuildLogChunk.offset)))
    assert text.text == whole + "\n"
    found = [json.loads(row) for row in c.get(url(application, "/log/download?format=ndjson&q=warn")).text.splitlines()]
    assert [row["line"] for row in found] == [1, 34, 67]
    assert all("warn" in row["text"] for row in found)


def test_another_team_sees_no_console(login, application, build, ops_member):
    write(build, "secret-ish\n")
    with pytest.raises(NotFound):
        build_console.console(ops_member, application, 1)
    c = login(ops_member)
    for path in ("", "/log?after=0", "/log?before=5", "/log/download"):
        assert c.get(url(application, path)).status_code == 404, path
