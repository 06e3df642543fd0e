"""`mailflow import`: existing material from a CSV file, each case opened
for its author's agreement, every bad cell named on the terminal.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mailflow import importing
from mailflow.cli.common import open_app, settings_from
from mailflow.documents import ACCEPTED
from mailflow.vocab import Kind, area_by_number
from mailflow.workflow.context import Workflow
from mailflow.workflow.fields import Problem


def cmd_import(args: argparse.Namespace) -> int:
    """Existing material from a CSV file, each case for its author's
    agreement: a line per row as it is done, every bad row's problems on
    its line, and a non-zero exit when any row was bad."""
    path = Path(args.file)
    opened = skipped = bad = 0
    with open_app(settings_from(args)) as app:
        importer = importing.Importer(app.database, app.workflow)
        for outcome in importer.run(path, dry_run=args.dry_run):
            if outcome.status == "bad":
                bad += 1
                problems = "; ".join(
                    f"{e.column}: {_import_problem(e.problem, app.workflow)}"
                    for e in outcome.errors
                )
                print(f"{path}:{outcome.line}: {problems}", file=sys.stderr, flush=True)
            elif outcome.status == "skipped":
                skipped += 1
                print(f"line {outcome.line}: skipped, imported before as {outcome.case_id}")
            elif outcome.status == "would_open":
                opened += 1
                print(f"line {outcome.line}: good; would ask {outcome.author} to agree")
            else:
                opened += 1
                print(
                    f"line {outcome.line}: {outcome.case_id} opened; "
                    f"waits for {outcome.author} to agree",
                    flush=True,
                )
        if not args.dry_run:
            app.drain_outbox()
    done = "would be opened" if args.dry_run else "opened, each waiting for its author"
    print(
        f"{opened} case(s) {done}; {skipped} imported before (skipped); {bad} bad row(s)"
        + (". Nothing was written." if args.dry_run else ".")
    )
    return 1 if bad else 0


def _import_problem(problem: Problem, workflow: Workflow) -> str:
    """A bad cell as the operator reads it, with the closest accepted value."""
    limit = workflow.settings.limits.max_attachment_bytes
    what = {
        "missing": "is empty",
        "unrecognised": f"{problem.value!r} is not recognised",
        "not_a_document": f"{problem.value} is not a {', '.join(ACCEPTED[:-1])} "
        f"or {ACCEPTED[-1]} file",
        "too_large": f"{problem.value} is larger than [limits].max_attachment_bytes = {limit}",
        "no_file": f"no such file: {problem.value}",
    }[problem.code]
    if problem.field == "author" and problem.code == "unrecognised":
        what += " (write it as Full Name <name@example.org>)"
    if problem.closest and problem.field == "economy":
        what += f" (did you mean {workflow.economies.get(problem.closest).name}?)"
    elif problem.closest and problem.field == "area":
        what += f" (did you mean {area_by_number(int(problem.closest)).name}?)"
    elif problem.closest:
        what += f" (did you mean {Kind(problem.closest).label}?)"
    return what
