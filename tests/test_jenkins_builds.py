"""The Jenkins adapter following builds the fake Jenkins simulates step by step: the console read while a
build runs, Jenkins' results, cancelled, forgotten and merged queue items. The fake only."""

from __future__ import annotations

import pytest

from integrations.ci import Build, BuildState, ConsoleChunk
from integrations.errors import NotFound
from tests import jenkins_support
from tests.fakes.jenkins_server import FakeJenkins
from tests.jenkins_support import JOB, PARAMETERS, TOKEN, USER, spec

# The fixtures shared with the other Jenkins tests: pytest finds them by these names.
connect, fake, fake_ci = jenkins_support.connect, jenkins_support.fake, jenkins_support.fake_ci


def test_the_console_is_read_in_chunks_with_byte_offsets_while_the_build_runs(fake, fake_ci):
    queued = fake_ci.trigger_build(JOB, PARAMETERS)
    assert fake_ci.get_build(queued).state is BuildState.QUEUED
    number = fake.start_build(queued.queue_id)
    running = fake_ci.get_build(queued)
    assert (running.state, running.number, running.duration_ms) == (BuildState.RUNNING, number, None)

    first = fake_ci.console(JOB, number)
    assert (first.text, first.more, first.next_start) == ("Started by user portal\n", True, 23)
    fake.append_console(JOB, number, "Step 1\nStep 2 is half")
    second = fake_ci.console(JOB, number, first.next_start)
    assert (second.text, second.more, second.next_start) == ("Step 1\n", True, 30)  # whole lines only
    fake.append_console(JOB, number, " done, café\n")
    third = fake_ci.console(JOB, number, second.next_start)
    assert third.text == "Step 2 is half done, café\n" and third.more
    assert third.next_start == 30 + len("Step 2 is half done, café\n".encode())  # bytes, not characters
    assert fake_ci.console(JOB, number, third.next_start) == ConsoleChunk("", third.next_start, True)

    fake.finish_build(JOB, number, "SUCCESS", duration_ms=4321)
    last = fake_ci.console(JOB, number, third.next_start)
    assert (last.text, last.more) == ("Finished: SUCCESS\n", False)
    assert fake_ci.console(JOB, number).text == first.text + second.text + third.text + last.text
    assert fake_ci.get_build(running) == Build(job=JOB, number=number, state=BuildState.SUCCEEDED,
                                               url=f"{fake.url}/job/dev/job/shop-api/1/", duration_ms=4321,
                                               queue_id=queued.queue_id, parameters=PARAMETERS)


@pytest.mark.parametrize("result, state", [
    ("SUCCESS", BuildState.SUCCEEDED), ("UNSTABLE", BuildState.FAILED), ("FAILURE", BuildState.FAILED),
    ("ABORTED", BuildState.ABORTED), ("NOT_BUILT", BuildState.ABORTED),
])
def test_jenkins_results_become_build_states(fake, fake_ci, result, state):
    queued = fake_ci.trigger_build(JOB, PARAMETERS)
    number = fake.start_build(queued.queue_id)
    fake.finish_build(JOB, number, result, duration_ms=900)
    build = fake_ci.get_build(queued)
    assert (build.state, build.duration_ms) == (state, 900)


def test_a_cancelled_queue_item_is_aborted_without_a_number(fake, fake_ci):
    queued = fake_ci.trigger_build(JOB, PARAMETERS)
    fake.cancel(queued.queue_id)
    assert fake_ci.get_build(queued) == Build(job=JOB, number=None, state=BuildState.ABORTED,
                                              queue_id=queued.queue_id, parameters=PARAMETERS)


@pytest.mark.parametrize("export_queue_id", [True, False], ids=["by-queue-id", "by-parameters"])
def test_a_forgotten_queue_item_still_finds_its_build(connect, export_queue_id):
    with FakeJenkins(user=USER, token=TOKEN, export_queue_id=export_queue_id) as server:
        adapter = connect(server.url, USER, TOKEN)
        adapter.create_job(spec("dev"))
        triggered = []
        for commit in ("aaa111", "bbb222", "aaa111"):  # the third repeats the first once that one has started
            triggered.append(adapter.trigger_build(JOB, {**PARAMETERS, "COMMIT": commit}))
            server.start_build(triggered[-1].queue_id)
        for build in triggered:
            server.forget_queue_item(build.queue_id)
        found = [adapter.get_build(build) for build in triggered]
        # Without queueId the newest build with the same parameters is taken: the first trigger finds the third.
        assert [b.number for b in found] == ([1, 2, 3] if export_queue_id else [3, 2, 3])
        assert all(b.state is BuildState.RUNNING for b in found)
        assert ("GET", "/queue/item/1/api/json", "", 404) in server.requests


def test_a_forgotten_queue_item_that_never_started_is_not_found(fake, fake_ci):
    queued = fake_ci.trigger_build(JOB, PARAMETERS)
    fake.cancel(queued.queue_id)
    fake.forget_queue_item(queued.queue_id)
    with pytest.raises(NotFound, match="is gone"):
        fake_ci.get_build(queued)


def test_identical_triggers_while_queued_share_one_queue_item(fake, fake_ci):
    first = fake_ci.trigger_build(JOB, PARAMETERS)
    assert fake_ci.trigger_build(JOB, dict(PARAMETERS)).queue_id == first.queue_id
    assert fake_ci.trigger_build(JOB, {**PARAMETERS, "IMAGE_TAG": "1.4.1"}).queue_id != first.queue_id
    assert fake.queue_ids(JOB) == [1, 2]
