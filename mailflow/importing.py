"""`mailflow import FILE.csv`: existing material, one row per case, each
opened for its author's agreement, exactly as an administrator's email to
``submit@`` with an ``Author:`` line is (SPEC section 3).

A row is checked with the rules of the email path (``fields.read_submission``,
``fields.read_author``, ``documents.pick_document`` and
``[limits].max_attachment_bytes``), never a second set of them. A good row
becomes the email the administrator would have sent (the form in its body,
the document attached), kept like any incoming message, so the case's
history names its source; it goes to ``submission.open_for_author`` in a
transaction of its own, so one bad row never undoes the others.

A row's identity is its author's address, its title (folded) and its
document's SHA-256, kept in the case's history (``queries.IMPORTED``): a
second run skips the rows it finds there. Nothing here prints; the command
line reads the outcomes.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import make_msgid
from pathlib import Path

from sqlalchemy.orm import Session

from mailflow.documents import pick_document
from mailflow.economies import normalise_name
from mailflow.errors import UsageError
from mailflow.forms import SUBMISSION_KEYS
from mailflow.parse import Attachment, parse_message
from mailflow.routing import Route
from mailflow.runner import delivery_key
from mailflow.spool import Envelope
from mailflow.store import queries
from mailflow.store.db import Database
from mailflow.store.files import files_of
from mailflow.store.models import InboundMessage
from mailflow.triage import Incoming
from mailflow.workflow import fields
from mailflow.workflow.context import Workflow
from mailflow.workflow.fields import Author, Problem
from mailflow.workflow.flows import submission

# Column headers are read like the form's keys ("Priority area", "Priority
# category", "Organisation", "Economía"...), plus the two that only a file has.
COLUMN_KEYS = {**SUBMISSION_KEYS, "document": "document", "file": "document"}
REQUIRED_COLUMNS = (*fields.REQUIRED, "document", "author")
_FORM_ORDER = ("title", "kind", "economy", "area", "organization", "summary", "second_contact")


@dataclass(frozen=True)
class RowError:
    """What is wrong with one row: its line in the file, the column as its
    header is written, and the problem (as codes, like an email's)."""

    line: int
    column: str
    problem: Problem


@dataclass(frozen=True)
class GoodRow:
    line: int
    form: dict[str, str]  # field name -> value as written
    author: Author
    document_name: str
    document: bytes
    identity: str


@dataclass(frozen=True)
class Outcome:
    """One row's fate: ``opened`` (a new case), ``would_open`` (dry run),
    ``skipped`` (imported before) or ``bad`` (see ``errors``)."""

    line: int
    status: str
    case_id: str = ""
    author: str = ""
    errors: tuple[RowError, ...] = ()


class Importer:
    def __init__(self, database: Database, workflow: Workflow) -> None:
        self.database = database
        self.workflow = workflow

    def run(self, path: Path, *, dry_run: bool) -> Iterator[Outcome]:
        """Each row's outcome as it is done (the caller shows progress)."""
        for line, row, headers in _rows(path):
            checked = check(row, headers, line, path.parent, self.workflow)
            if isinstance(checked, list):
                yield Outcome(line, "bad", errors=tuple(checked))
                continue
            yield self._open(checked, dry_run)

    def _open(self, row: GoodRow, dry_run: bool) -> Outcome:
        if dry_run:
            with self.database.reading() as session:
                earlier = queries.imported_case(session, row.identity)
                if earlier is not None:
                    return Outcome(row.line, "skipped", earlier.public_id, row.author.email)
            return Outcome(row.line, "would_open", author=row.author.email)
        with self.database.transaction() as session:
            earlier = queries.imported_case(session, row.identity)
            if earlier is not None:
                return Outcome(row.line, "skipped", earlier.public_id, row.author.email)
            incoming = self._incoming(session, row)
            case = submission.open_for_author(session, incoming, self.workflow, row.author)
            incoming.record.outcome = "handled: submit"
            incoming.record.detail = f"{case.public_id}: imported, line {row.line}"
            self.workflow.engine.record(
                session, case, queries.IMPORTED, incoming.sender, incoming.record, note=row.identity
            )
            return Outcome(row.line, "opened", case.public_id, row.author.email)

    def _incoming(self, session: Session, row: GoodRow) -> Incoming:
        """The email an administrator would have sent for the row, kept
        as an incoming message."""
        workflow = self.workflow
        submit = workflow.router.address(Route.SUBMIT)
        raw = _email(row, workflow.admins[0], submit)
        envelope = Envelope(workflow.admins[0], (submit,), workflow.clock.now(), "import")
        parsed = parse_message(raw)
        record = InboundMessage(
            delivery_key=delivery_key(envelope, raw),
            received_at=envelope.received_at,
            envelope_sender=envelope.sender,
            envelope_recipients=submit,
            message_id=parsed.message_id[:998],
            sender=parsed.sender,
            subject=parsed.subject[:2000],
            outcome="processing",
            raw_sha256=files_of(session).put(raw),
        )
        session.add(record)
        session.flush()
        return Incoming(parsed, envelope, record, workflow.router.resolve(submit))


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str], dict[str, str]]]:
    """(line where the row starts, field name -> value, field name ->
    header as written) for each row that is not blank."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot be read as a UTF-8 CSV file ({exc})") from exc
    reader = csv.reader(text.splitlines(keepends=True))
    header = next(reader, [])
    headers: dict[str, str] = {}
    index: dict[str, int] = {}
    for position, written in enumerate(header):
        name = COLUMN_KEYS.get(normalise_name(written))
        if name is not None and name not in headers:
            headers[name], index[name] = written.strip(), position
    absent = [name.replace("area", "priority area") for name in REQUIRED_COLUMNS]
    absent = [name for name in absent if name.replace("priority ", "") not in headers]
    if absent:
        raise UsageError(
            f"{path}: line 1 lacks the column(s) {', '.join(absent)}; the header must name "
            "title, kind, economy, priority area, organization, summary, second contact "
            "(may be empty), document, author"
        )
    start = reader.line_num + 1
    for cells in reader:
        if any(cell.strip() for cell in cells):
            yield start, {n: cells[i] if i < len(cells) else "" for n, i in index.items()}, headers
        start = reader.line_num + 1


def check(
    row: dict[str, str], headers: dict[str, str], line: int, folder: Path, workflow: Workflow
) -> GoodRow | list[RowError]:
    """The row as it would be opened, or everything wrong with it: the
    codes of ``fields.Problem``, and ``no_file`` for a document path that
    names no file."""
    form = {name: _cell(name, value) for name, value in row.items() if value.strip()}
    problems: list[Problem] = []
    read = fields.read_submission(form, workflow.economies)
    problems.extend(read.problems)
    unrecognised = {p.field for p in problems}
    for name in fields.REQUIRED:
        if getattr(read, name) is None and name not in unrecognised:
            problems.append(Problem(name))
    author = fields.read_author(form["author"]) if "author" in form else Problem("author")
    if isinstance(author, Problem):
        problems.append(author)
    document_name, content, document_problem = _document(form.get("document", ""), folder, workflow)
    if document_problem is not None:
        problems.append(document_problem)
    if problems or isinstance(author, Problem):
        order = list(headers)  # as the columns stand in the file
        problems.sort(key=lambda p: order.index(p.field))
        return [RowError(line, headers[p.field], p) for p in problems]
    identity = _identity(author.email, read.title or "", content)
    return GoodRow(line, form, author, document_name, content, identity)


def _cell(name: str, value: str) -> str:
    """A cell's value on one line; a summary keeps its line breaks."""
    if name != "summary":
        return " ".join(value.split())
    return "\n".join(" ".join(line.split()) for line in value.strip().splitlines())


def _document(written: str, folder: Path, workflow: Workflow) -> tuple[str, bytes, Problem | None]:
    """The document a row names (a path relative to the CSV file's folder),
    checked as an attachment would be."""
    if not written:
        return "", b"", Problem("document")
    path = folder / written
    if not path.is_file():
        return "", b"", Problem("document", "no_file", str(path))
    content = path.read_bytes()
    picked, _ = pick_document((Attachment(path.name, "", content),))
    if picked is None:
        return "", b"", fields.missing_document([written])
    if len(content) > workflow.settings.limits.max_attachment_bytes:
        return "", b"", fields.document_too_large(written)
    return path.name, content, None


def _identity(author: str, title: str, document: bytes) -> str:
    """The same author, title and document: the same row, whatever else
    was corrected in the file since."""
    digest = hashlib.sha256(document).hexdigest()
    key = "\n".join((author.lower(), normalise_name(title), digest))
    return "import " + hashlib.sha256(key.encode()).hexdigest()


def _email(row: GoodRow, admin: str, submit: str) -> bytes:
    message = EmailMessage()
    message["From"] = admin
    message["To"] = submit
    message["Subject"] = row.form["title"]
    message["Message-ID"] = make_msgid(domain=submit.rpartition("@")[2])
    labels = {"area": "Priority area", "second_contact": "Second contact"}
    # Continuation lines are indented past where a key could start, so a
    # summary line such as "Economy: growing" stays part of the summary.
    lines = [
        f"{labels.get(name, name.capitalize())}: " + row.form[name].replace("\n", "\n    ")
        for name in _FORM_ORDER
        if name in row.form
    ]
    author = f"{row.author.name} <{row.author.email}>".strip()
    message.set_content("\n".join([*lines, f"Author: {author}"]) + "\n")
    message.add_attachment(
        row.document, maintype="application", subtype="octet-stream", filename=row.document_name
    )
    ascii_only = all(ord(c) < 128 for c in admin + submit)
    return message.as_bytes(policy=SMTP if ascii_only else SMTPUTF8)
