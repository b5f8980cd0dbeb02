"""`make demo`'s flow, compressed: three reference agents complete a debate against a live server and ticker.

Real processes, real HTTP: the ASGI server (gunicorn + uvicorn worker, as in
the Procfile) and ``run_ticker`` run as children on the test database, and
three copies of examples/agent.py take part through the public API. The
timeline is short (3 s signup, two 2 s rounds, 0.2 s tick) so the test takes
about fifteen seconds.
"""

from __future__ import annotations

import io
import runpy
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command

from devtools.environments import child_env
from devtools.processes import Stack, last_line, wait_for
from topics.models import Argument, Camp, Topic, TopicEvent, TopicStatus, Verdict

pytestmark = pytest.mark.django_db(transaction=True)

CAMPS = ("pro", "con", "judge")


def manage(*args: str) -> str:
    """An operator command, in process (same code path as the demo's subprocess); returns its last line."""
    out = io.StringIO()
    call_command(*args, stdout=out)
    return last_line(out.getvalue())


# Polling often, or reacting to the agent's own event stream (--poll then only paces the search for
# topics opening for signup, which no agent event announces: it must fit the 3 s signup window).
MODES = {"polling": ("--poll", "0.2"), "events": ("--events", "--poll", "1")}


@pytest.mark.parametrize("mode", MODES)
def test_three_reference_agents_complete_a_debate(tmp_path, winner_schema, mode):
    tokens = {camp: manage("create_agent", f"flow-{camp}") for camp in CAMPS}
    with Stack(env=child_env(), log_dir=tmp_path, tick="0.2s") as stack:
        # Agents first, topic second: the 3 s signup window starts only once everyone is listening.
        agent_args = (*MODES[mode], "--until-idle", "--max-seconds", "60")
        agents = {
            camp: stack.agent(f"agent-{camp}", token, "--camp", camp, *agent_args) for camp, token in tokens.items()
        }
        # A loaded machine can take seconds to start three interpreters: wait until each has said who it is.
        wait_for(
            lambda: all("signed in as" in agent.stdout + agent.stderr for agent in agents.values()),
            timeout=60,
            message="the agents did not start",
        )
        topic_id = manage(
            "create_topic", "--title", "Demo flow", "--signup-for", "3s", "--debate-for", "4s", "--rounds", "2",
            "--verdict-within", "20s",
        )  # fmt: skip

        def finished() -> bool:
            return Topic.objects.filter(pk=topic_id, status__in=[TopicStatus.COMPLETED, TopicStatus.CANCELLED]).exists()

        try:
            wait_for(finished, timeout=45, interval=0.2, message="the topic did not finish")
        except AssertionError:
            pytest.fail(f"topic not finished\n{stack.logs()}")
        codes = {camp: agent.wait(timeout=15) for camp, agent in agents.items()}

    topic = Topic.objects.get(pk=topic_id)
    assert topic.status == TopicStatus.COMPLETED, f"{topic.cancelled_reason}\n{stack.logs()}"
    assert codes == dict.fromkeys(CAMPS, 0), stack.logs()
    if mode == "events":
        # They were told: the debaters of each round opening, the judge of judging.
        assert all("round_opened" in agents[camp].stdout for camp in ("pro", "con")), stack.logs()
        assert "judging_opened" in agents["judge"].stdout, stack.logs()

    # Each agent got the camp it volunteered for (one volunteer per camp leaves the allocator no choice).
    placed = {camp.camp: camp.agent.name for camp in Camp.objects.filter(topic=topic).select_related("agent")}
    assert placed == {camp: f"flow-{camp}" for camp in CAMPS}

    # Both debaters spoke in both rounds, once each (the agent's default), and only they did.
    spoken = sorted(Argument.objects.filter(topic=topic).values_list("round__round_no", "camp", "agent__name"))
    assert spoken == [(0, "con", "flow-con"), (0, "pro", "flow-pro"), (1, "con", "flow-con"), (1, "pro", "flow-pro")]

    verdict = Verdict.objects.select_related("judge").get(topic=topic)
    assert verdict.judge.name == "flow-judge"
    assert verdict.verdict["winner"] in ("pro", "con", "draw") and verdict.rationale.strip()

    # The event log tells the same story, gap-free.
    events = list(TopicEvent.objects.filter(topic=topic).order_by("seq").values_list("seq", "kind"))
    assert [seq for seq, _ in events] == list(range(1, len(events) + 1))
    kinds = [kind for _, kind in events]
    assert kinds.count("argument_posted") == 4 and kinds.count("round_opened") == 2
    assert kinds[-1] == "status_changed" and "verdict_posted" in kinds


def test_five_reference_agents_complete_a_blind_panel(tmp_path, winner_schema):
    """A judge on a panel behaves as a single judge does: three copies judge, the last ballot completes it."""
    camps = ("pro", "con", "judge", "judge", "judge")
    tokens = [(camp, manage("create_agent", f"panel-{n}-{camp}")) for n, camp in enumerate(camps)]
    with Stack(env=child_env(), log_dir=tmp_path, tick="0.2s") as stack:
        agent_args = ("--poll", "0.2", "--until-idle", "--max-seconds", "90")
        agents = [
            stack.agent(f"agent-{n}", token, "--camp", camp, *agent_args) for n, (camp, token) in enumerate(tokens)
        ]
        wait_for(
            lambda: all("signed in as" in agent.stdout + agent.stderr for agent in agents),
            timeout=90,
            message="the agents did not start",
        )
        topic_id = manage(
            "create_topic", "--title", "Panel flow", "--signup-for", "3s", "--debate-for", "4s", "--rounds", "2",
            "--verdict-within", "30s", "--judges", "3", "--blind",
        )  # fmt: skip

        def finished() -> bool:
            return Topic.objects.filter(pk=topic_id, status__in=[TopicStatus.COMPLETED, TopicStatus.CANCELLED]).exists()

        try:
            wait_for(finished, timeout=60, interval=0.2, message="the topic did not finish")
        except AssertionError:
            pytest.fail(f"topic not finished\n{stack.logs()}")
        codes = [agent.wait(timeout=20) for agent in agents]
        # make demo's summary of a finished topic copes with a panel (camps.judges is a list).
        render = runpy.run_path(str(Path(__file__).resolve().parent.parent / "scripts" / "demo.py"))["render"]
        summary = render(stack.base_url, httpx.get(f"{stack.base_url}/api/topics/{topic_id}/", timeout=5).json())

    topic = Topic.objects.get(pk=topic_id)
    assert topic.status == TopicStatus.COMPLETED, f"{topic.cancelled_reason}\n{stack.logs()}"
    assert codes == [0] * len(agents), stack.logs()
    judges = Camp.objects.filter(topic=topic, camp="judge").values_list("agent__name", flat=True)
    assert sorted(judges) == [f"panel-{n}-judge" for n in (2, 3, 4)]
    assert all(f"judge=panel-{n}-judge" in summary for n in (2, 3, 4)), summary
    assert "pro=panel-0-pro" in summary and "con=panel-1-con" in summary, summary
    assert Argument.objects.filter(topic=topic).count() == 4
    # Every judge voted: the panel completed on its last ballot, not at the deadline.
    assert topic.ballots.count() == 3
    verdict = Verdict.objects.get(topic=topic)
    assert sum(verdict.tally.values()) == 3 and verdict.verdict["winner"] in ("pro", "con", "draw")
    kinds = list(TopicEvent.objects.filter(topic=topic).order_by("seq").values_list("kind", flat=True))
    assert kinds.count("ballot_posted") == 3 and "identities_revealed" in kinds
    # The debaters argued blind: their stored argument events name camps, not agents.
    posted = TopicEvent.objects.filter(topic=topic, kind="argument_posted").values_list("data", flat=True)
    assert {d["agent"]["name"] for d in posted} == {"pro", "con"}
