"""The workflow core in process: each flow's table agrees with its actions,
stages and effects, and each transition causes what it declares. No
SMTP here (the end-to-end tests cover the edges): cases are made and
moved directly, and the outbox rows are read from the database."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest
from mails import address, submission
from sqlalchemy import event, select

from mailflow.app import App, build
from mailflow.config import Settings, load_settings
from mailflow.errors import ActionRefused, ConfigError
from mailflow.notify.render import TEMPLATES
from mailflow.runner import Result
from mailflow.spool import Envelope
from mailflow.store.models import Case, OutboxMessage, Participant
from mailflow.vocab import Kind
from mailflow.workflow import decisions, steps
from mailflow.workflow.flow import Flow, Flows
from mailflow.workflow.flows import build_flows
from mailflow.workflow.states import Event, State

ADMIN, EDITOR, FOCAL = "admin@mailflow.localhost", "editor@example.org", "focal.cl@example.org"
CONFIGS = {
    "default": "",
    "editor": f'[workflow]\nstages = ["admin", "editor", "focal_point"]\n'
    f'[editors]\naddresses = ["{EDITOR}"]\n',
    "unmoderated": "[comments]\nmoderation = false\n",
}


def flows_for(write_config: Callable[..., Path], name: str) -> Flows:
    return build_flows(load_settings(write_config(CONFIGS[name]), environ={}))


def every_flow(write_config: Callable[..., Path]) -> Iterator[tuple[str, Flow]]:
    for name in CONFIGS:
        for flow in flows_for(write_config, name):
            yield f"{name}/{flow.name}", flow


def test_every_action_of_every_stage_is_an_allowed_transition(
    write_config: Callable[..., Path],
) -> None:
    """A reviewer is never offered a button the table would refuse, and
    every stage can be left forwards and by rejection or withdrawal."""
    for where, flow in every_flow(write_config):
        for stage in flow.stages:
            assert stage.actions, where
            assert sum(a.positive for a in stage.actions) == 1, (where, stage.name)
            for action in stage.actions:
                assert flow.next_state(stage.state, action.event) is not None, (
                    where,
                    stage.name,
                    action.word,
                )
            assert flow.next_state(stage.state, Event.WITHDRAWN) is State.WITHDRAWN, where


def test_every_state_a_reviewer_can_be_in_has_its_actions(
    write_config: Callable[..., Path],
) -> None:
    """Walking the table from the first state, every state reached is a
    stage with actions, a state waiting on the author, or an end."""
    waiting_on_author = {State.PENDING_CONFIRMATION, State.INCOMPLETE, State.CHANGES_REQUESTED}
    ends = {State.PUBLISHED, State.UNPUBLISHED, State.ACCEPTED, State.REJECTED}
    ends |= {State.WITHDRAWN, State.EXPIRED}
    for where, flow in every_flow(write_config):
        reached, frontier = set(), [State.PENDING_CONFIRMATION]
        while frontier:
            state = frontier.pop()
            if state in reached:
                continue
            reached.add(state)
            frontier += [
                after for (before, _), after in flow.transitions.items() if before == state
            ]
        for state in reached:
            assert flow.actions_at(state) or state in waiting_on_author | ends, (where, state)
        assert {s.state for s in flow.stages} <= reached, where
        assert flow.done in reached, where


def test_every_effect_belongs_to_a_transition_of_its_flow(
    write_config: Callable[..., Path],
) -> None:
    """An effect declared for an event (or an event in a state) the table
    never allows would be dead wording."""
    for where, flow in every_flow(write_config):
        events = {event for (_, event) in flow.transitions}
        for key in flow.effects:
            if isinstance(key, tuple):
                assert key in flow.transitions, (where, key)
            else:
                assert key in events, (where, key)


def test_every_email_a_flow_names_has_its_templates(write_config: Callable[..., Path]) -> None:
    for where, flow in every_flow(write_config):
        names = [s.template for s in flow.stages]
        names += [flow.incomplete_mail] if flow.incomplete_mail else []
        for name in names:
            for part in ("txt", "html"):
                assert (TEMPLATES / "mail" / f"{name}.{part}.j2").is_file(), (where, name)
        assert (TEMPLATES / "mail" / "flows" / f"{flow.name}.j2").is_file(), where


def test_the_submission_table_is_the_spec(write_config: Callable[..., Path]) -> None:
    """SPEC section 4: the happy path through the configured stages,
    revisions, rejection, withdrawal, unpublishing, expiry."""
    for name, path in (
        ("default", [State.ADMIN_REVIEW, State.FOCAL_REVIEW]),
        ("editor", [State.ADMIN_REVIEW, State.EDITOR_REVIEW, State.FOCAL_REVIEW]),
    ):
        flow = next(iter(flows_for(write_config, name)))
        state = flow.next_state(State.PENDING_CONFIRMATION, Event.CONFIRMED)
        assert state is State.INCOMPLETE
        state = flow.next_state(state, Event.COMPLETED)
        for stage_state in path:
            assert state is stage_state
            stage = flow.stage(state)
            assert stage is not None
            state = flow.next_state(state, stage.decision.event)
        assert state is State.PUBLISHED
        assert flow.next_state(State.CHANGES_REQUESTED, Event.REVISED) is State.ADMIN_REVIEW
        assert flow.next_state(State.PUBLISHED, Event.WITHDRAWN) is None
        assert flow.next_state(State.REJECTED, Event.APPROVED) is None
        assert flow.next_state(State.PUBLISHED, Event.UNPUBLISHED) is State.UNPUBLISHED
        assert flow.next_state(State.UNPUBLISHED, Event.REPUBLISHED) is State.PUBLISHED
        assert flow.next_state(State.PENDING_CONFIRMATION, Event.EXPIRED) is State.EXPIRED
    editor = next(iter(flows_for(write_config, "editor"))).stage(State.EDITOR_REVIEW)
    assert editor is not None and [a.word for a in editor.actions] == ["approve", "changes"]


def test_a_stage_list_out_of_order_is_a_config_error(write_config: Callable[..., Path]) -> None:
    with pytest.raises(ConfigError, match="stages"):
        load_settings(write_config('[workflow]\nstages = ["focal_point", "admin"]\n'), environ={})
    with pytest.raises(ConfigError, match=r"\[editors\] addresses"):
        load_settings(
            write_config('[workflow]\nstages = ["admin", "editor", "focal_point"]\n'), environ={}
        )


# -- each transition's effects, on both databases ------------------------------------


@pytest.fixture
def config_text() -> str:
    return CONFIGS["editor"] + '[economies.CL]\nfocal_points = ["focal.cl@example.org"]\n'


@pytest.fixture
def core(settings: Settings) -> Iterator[App]:
    built = build(settings)
    yield built
    built.database.dispose()


def a_case(app: App, state: State, kind: Kind = Kind.BEST_PRACTICE) -> int:
    with app.database.transaction() as session:
        author = Participant(email="ana@example.org", name="Ana", economy="CL", created_at=now(app))
        author.confirmed_at = now(app)
        session.add(author)
        session.flush()
        case = app.workflow.engine.open_case(
            session, kind=kind, author=author, state=state, message=None, thread_id=""
        )
        case.title, case.economy, case.area = "Seed capital", "CL", 1
        case.organization, case.summary = "SERCOTEC", "Seed capital for micro entrepreneurs."
        return case.id


def now(app: App) -> datetime:
    return app.workflow.clock.now()


def sent(app: App) -> list[tuple[str, str]]:
    """(template, recipient) of every email written, in order."""
    with app.database.transaction() as session:
        rows = session.execute(
            select(OutboxMessage.template, OutboxMessage.recipient).order_by(OutboxMessage.id)
        )
        return [(template, recipient) for template, recipient in rows]


def decide(app: App, case_id: int, word: str, actor: str, reason: str = "") -> None:
    with app.database.transaction() as session:
        case = session.get(Case, case_id)
        assert case is not None
        decisions.act(session, case, app.workflow, word=word, actor=actor, reason=reason)


def state_of(app: App, case_id: int) -> State:
    with app.database.transaction() as session:
        case = session.get(Case, case_id)
        assert case is not None
        return case.state


def test_each_decision_causes_what_its_flow_declares(core: App) -> None:
    """Through the admin, editor and focal point stages: each decision is
    confirmed to whoever decided, tells the author and asks the next
    stage's reviewers, and nobody else."""
    case_id = a_case(core, State.ADMIN_REVIEW)
    decide(core, case_id, "approve", ADMIN)
    assert state_of(core, case_id) is State.EDITOR_REVIEW
    assert sent(core) == [
        ("decision_done", ADMIN),
        ("case_approved", "ana@example.org"),
        ("editor_review", EDITOR),
    ]
    decide(core, case_id, "approve", EDITOR)
    assert state_of(core, case_id) is State.FOCAL_REVIEW
    assert sent(core)[3:] == [("decision_done", EDITOR), ("focal_review", FOCAL)]
    decide(core, case_id, "endorse", FOCAL, "Good")
    assert state_of(core, case_id) is State.PUBLISHED
    assert sent(core)[5:] == [
        ("decision_done", FOCAL),
        ("case_published", "ana@example.org"),
        ("admin_case_update", ADMIN),
    ]


def test_an_editor_asking_for_changes_sends_the_case_back_to_its_author(core: App) -> None:
    case_id = a_case(core, State.EDITOR_REVIEW)
    decide(core, case_id, "changes", EDITOR, "Please shorten the summary")
    assert state_of(core, case_id) is State.CHANGES_REQUESTED
    assert sent(core) == [
        ("decision_done", EDITOR),
        ("changes_requested", "ana@example.org"),
        ("admin_case_update", ADMIN),
    ]
    with pytest.raises(ActionRefused, match="possible: approve, changes"):
        decide(core, a_case_in(core, State.EDITOR_REVIEW), "reject", EDITOR)


def a_case_in(app: App, state: State) -> int:
    with app.database.transaction() as session:
        author = session.scalar(select(Participant))
        assert author is not None
        case = app.workflow.engine.open_case(
            session, kind=Kind.EXPERIENCE, author=author, state=state, message=None, thread_id=""
        )
        return case.id


def test_withdrawing_tells_the_administrators_only_when_reviewers_were_at_work(
    core: App,
) -> None:
    waiting, reviewed = a_case(core, State.INCOMPLETE), a_case_in(core, State.FOCAL_REVIEW)
    for case_id in (waiting, reviewed):
        with core.database.transaction() as session:
            case = session.get(Case, case_id)
            assert case is not None
            steps.move(session, case, core.workflow, Event.WITHDRAWN, actor="ana@example.org")
    # The case without an economy was with the administrator in the focal
    # point's place: they hear that nothing more is needed from them.
    assert sent(core) == [
        ("case_withdrawn", "ana@example.org"),
        ("review_closed", ADMIN),
        ("case_withdrawn", "ana@example.org"),
    ]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_worker_opening_a_case_waits_for_no_other_workers_transaction(core: App) -> None:
    """Two workers open cases at once on PostgreSQL: the second does not
    wait for the first's transaction to end. It did: the case number's
    counter stayed locked until the commit, so workers took turns. A number
    whose case is rolled back is not given again: the numbers skip it."""
    a_case(core, State.INCOMPLETE)  # BP-2026-0001, and its author

    class RolledBack(Exception):
        pass

    other_worker = ThreadPoolExecutor(1)
    try:
        with pytest.raises(RolledBack), core.database.transaction() as session:
            author = session.scalar(select(Participant))
            assert author is not None
            core.workflow.engine.open_case(  # takes 0002; its transaction stays open
                session,
                kind=Kind.EXPERIENCE,
                author=author,
                state=State.INCOMPLETE,
                message=None,
                thread_id="",
            )
            other_worker.submit(a_case_in, core, State.INCOMPLETE).result(timeout=10)
            raise RolledBack
    finally:
        other_worker.shutdown()  # after the rollback: a waiting worker can end
    a_case_in(core, State.INCOMPLETE)
    with core.database.transaction() as session:
        opened = session.scalars(select(Case.public_id).order_by(Case.id)).all()
    assert opened == ["BP-2026-0001", "EX-2026-0003", "EX-2026-0004"]


def test_a_registered_authors_complete_submission_writes_its_case_once(core: App) -> None:
    """A submission that moves on at once is written with the state it
    reaches: one INSERT of the case, its history in order, no UPDATE of it
    (there was an INSERT, then a compare-and-set UPDATE). One that waits is
    written before the email asking to confirm is bound to it. The
    authors' rows are in the session already: their emails' language is
    read from them, not asked for again. An earned acknowledgement that
    replies to none of our emails does not look for the answers of the
    last hour."""
    with core.database.transaction() as session:
        author = Participant(
            email="ana@example.org", name="Ana", economy="CL", created_at=now(core)
        )
        author.confirmed_at = now(core)
        session.add(author)
    statements: list[str] = []

    def seen(_connection: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(" ".join(statement.split()[:3]))

    event.listen(core.database.engine, "before_cursor_execute", seen)
    try:
        for sender in ("ana@example.org", "luis@example.org"):
            mail = submission(sender=sender).as_bytes()
            core.spool.put(Envelope(sender, (address("submit"),), now(core), "test"), mail)
            assert core.runner.run_pending() == [Result.DONE]
    finally:
        event.remove(core.database.engine, "before_cursor_execute", seen)
    assert statements.count("INSERT INTO cases") == 2
    assert "UPDATE cases SET" not in statements
    # Only the administrator's language is asked for.
    assert statements.count("SELECT participants.email, participants.language,") == 1
    # The answers of the last hour only for the request to confirm: the
    # registered author's acknowledgement is earned and replies to none of
    # our emails, so no cap can withhold it.
    assert statements.count("SELECT outbox.template, outbox.case_id") == 1
    with core.database.transaction() as session:
        cases = session.scalars(select(Case).order_by(Case.id)).all()
        assert [c.state for c in cases] == [State.ADMIN_REVIEW, State.PENDING_CONFIRMATION]
        history = [(e.event, e.from_state, e.to_state) for e in cases[0].events]
        assert history == [
            ("submitted", None, State.INCOMPLETE),
            ("completed", State.INCOMPLETE, State.ADMIN_REVIEW),
        ]
        asked = session.scalar(
            select(OutboxMessage.case_id).where(OutboxMessage.template == "submission_confirm")
        )
        assert asked == cases[1].id


def test_a_move_the_table_forbids_changes_nothing_and_sends_nothing(core: App) -> None:
    case_id = a_case(core, State.PUBLISHED)
    with core.database.transaction() as session:
        case = session.get(Case, case_id)
        assert case is not None
        with pytest.raises(ActionRefused, match="not possible now"):
            steps.move(session, case, core.workflow, Event.APPROVED, actor=ADMIN)
    assert state_of(core, case_id) is State.PUBLISHED and sent(core) == []


def test_user_text_is_escaped_in_every_html_part(core: App) -> None:
    """A title and a reason written as HTML reach every HTML part as text,
    whichever template or shared sentence (templates/mail/flows/) says them."""
    hostile = '<img src=x onerror="alert(1)">'
    case_id = a_case(core, State.FOCAL_REVIEW)
    with core.database.transaction() as session:
        case = session.get(Case, case_id)
        assert case is not None
        case.title = f"Seed {hostile}"
    decide(core, case_id, "reject", FOCAL, f"Because {hostile}")  # author and admins told
    withdrawn = a_case_in(core, State.ADMIN_REVIEW)
    with core.database.transaction() as session:
        case = session.get(Case, withdrawn)
        assert case is not None
        case.title = hostile
        steps.move(session, case, core.workflow, Event.WITHDRAWN, actor="ana@example.org")
    with core.database.transaction() as session:
        raws = session.scalars(select(OutboxMessage.raw)).all()
    assert len(raws) >= 4
    for raw in raws:
        mail = email.message_from_bytes(raw, policy=email.policy.default)
        html = mail.get_body(preferencelist=("html",))
        assert html is not None
        assert "<img" not in str(html.get_content()), mail["Subject"]
