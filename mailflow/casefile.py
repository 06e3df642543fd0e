"""What `mailflow cases` and `mailflow case ID` show: plain data built from
the database, then text or JSON. Read-only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow.economies import Economies
from mailflow.errors import NotFound
from mailflow.store.models import Case
from mailflow.store.queries import case_named
from mailflow.vocab import AREAS, Kind


def list_cases(
    session: Session, state: str | None, kind: str | None = None
) -> list[dict[str, str]]:
    query = select(Case).order_by(Case.id)
    if state:
        query = query.where(Case.state == state)
    if kind:
        query = query.where(Case.kind == kind)
    return [
        {
            "id": case.public_id,
            "state": case.state,
            "since": _day(case.state_since),
            "economy": case.economy or "-",
            "author": case.author.email,
            "title": case.title or "(no title yet)",
        }
        for case in session.scalars(query)
    ]


def format_list(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "No cases."
    lines = [f"{'CASE':<13} {'STATE':<20} {'SINCE':<10} {'EC':<3} TITLE"]
    lines += [
        f"{r['id']:<13} {r['state']:<20} {r['since']:<10} {r['economy']:<3} {r['title'][:60]}"
        for r in rows
    ]
    return "\n".join(lines)


def case_file(session: Session, public_id: str, economies: Economies) -> dict[str, Any]:
    case = case_named(session, public_id)
    if case is None:
        raise NotFound(f"no case {public_id.upper()}; `mailflow cases` lists them")
    document = case.document
    return {
        "id": case.public_id,
        "state": case.state,
        "since": case.state_since.isoformat(),
        "kind": Kind(case.kind).label if case.kind else None,
        "title": case.title,
        "economy": economies.get(case.economy).name if case.economy else None,
        "area": AREAS[case.area - 1].name if case.area else None,
        "organization": case.organization,
        "summary": case.summary,
        "second_contact": case.second_contact,
        "about": case.about.public_id if case.about else None,
        "preferred_dates": case.preferred_dates,
        "funding": case.funding,
        "related": [
            {"id": c.public_id, "state": c.state, "author": c.author.email}
            for c in session.scalars(select(Case).where(Case.about_id == case.id).order_by(Case.id))
        ],
        "author": {"name": case.author.name, "email": case.author.email},
        "document": {
            "filename": document.filename,
            "type": document.content_type,
            "size": document.size,
            "sha256": document.sha256,
        }
        if document
        else None,
        # Every document the case was sent with, oldest first: a revision or
        # a language editor's correction adds one and keeps the others.
        "documents": [
            {
                "filename": d.filename,
                "size": d.size,
                "sha256": d.sha256,
                "added": d.created_at.isoformat(),
            }
            for d in case.documents
        ],
        "created": case.created_at.isoformat(),
        "history": [
            {
                "at": e.at.isoformat(),
                "actor": e.actor,
                "event": e.event,
                "from": e.from_state,
                "to": e.to_state,
                "message": e.message_id,
                "note": e.note,
            }
            for e in case.events
        ],
    }


def format_case(data: dict[str, Any]) -> str:
    document = data["document"]
    lines = [
        f"Case: {data['id']}",
        f"State: {data['state']}",
        f"Since: {data['since'][:16].replace('T', ' ')} UTC",
        f"Kind: {data['kind'] or '-'}",
        f"Title: {data['title'] or '-'}",
    ]
    if data["about"]:  # a comment or an internship application
        lines.append(f"About: {data['about']}")
    lines += [
        f"Economy: {data['economy'] or '-'}",
        f"Organization: {data['organization'] or '-'}",
        f"Author: {data['author']['name']} <{data['author']['email']}>",
    ]
    if not data["about"]:  # what only a submission has
        lines[-2:-2] = [f"Priority area: {data['area'] or '-'}"]
        lines += [
            f"Second contact: {data['second_contact'] or '-'}",
            "Document: "
            + (
                f"{document['filename']} ({document['size']} bytes, {document['type']})"
                if document
                else "-"
            ),
        ]
    for earlier in data["documents"][:-1]:
        lines.append(
            f"Earlier document: {earlier['filename']} ({earlier['size']} bytes, "
            f"added {earlier['added'][:16].replace('T', ' ')} UTC)"
        )
    if data["preferred_dates"]:
        lines.append(f"Preferred dates: {data['preferred_dates']}")
    if data["funding"]:
        lines.append(f"Funding: {data['funding'].replace('_', '-')}")
    lines += [
        "Summary:" if not data["about"] else "Text:",
        *(f"  {line}" for line in (data["summary"] or "-").splitlines()),
        "",
    ]
    if data["related"]:
        lines.append("Comments and internship applications:")
        lines += [f"  {c['id']}  {c['state']:<20} {c['author']}" for c in data["related"]]
        lines.append("")
    lines.append("History:")
    for event in data["history"]:
        move = f" {event['from'] or ''} -> {event['to']}" if event["to"] else ""
        via = f" (message #{event['message']})" if event["message"] else ""
        note = f": {event['note']}" if event["note"] else ""
        lines.append(
            f"  {event['at'][:19].replace('T', ' ')}  {event['event']}{move}"
            f"  by {event['actor']}{via}{note}"
        )
    return "\n".join(lines)


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")
