"""Every sentence a participant or reviewer reads (emails, the archive's
pages, the report) comes from ``templates/``, where it can be translated;
Python passes codes and values. The scan reads every module of the
package and lists the string literals of three or more words that could
reach such a reader.

Left out, because only operators read them, in English: docstrings,
``argparse`` help, log lines and progress lines, exception messages
(`raise`), the outcome a handler returns for the log and the message
record, history notes (``note=``, shown by `mailflow case`), and the
command line's own modules. Also left out: regular expressions (they read
mail, in many languages), and the few literals below, each with why."""

from __future__ import annotations

import ast
from pathlib import Path

import mailflow

PACKAGE = Path(mailflow.__file__).parent
OPERATOR_ONLY = {"__main__.py", "casefile.py"}  # the command line and its output
COMMAND_LINE = {"cli"}  # the package of the `mailflow` command: its output, too
# SMTP replies: RFC 5321 text for the sending server, in English by convention.
PROTOCOL = {"ingress"}
# /healthz and the metrics' help: read by the operator's monitoring, as log lines are.
MONITORING = {"monitor"}
NOT_PROSE = {
    # The official names of the six priority areas: data, like economy names.
    "vocab.py": {
        "Access to Financial Services",
        "Access to Technology",
        "Management and Marketing Skills",
        "Compiling Information for Policy Adjustment",
        "Policy and Regulatory Frameworks",
        # ... and the seed portal's labels for them.
        "access to finance",
        "access to financing",
    },
    # The default site name and sender: names an operator sets in config.toml.
    "config.py": {
        "APEC MSE Best Practices",
        "APEC MSE Best Practices <help@mailflow.localhost>",
    },
    # A header value and a piece of markup, not words.
    "archive/server.py": {
        "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        "default-src 'none'; sandbox",
    },
    # SQL: the revision alembic records, read without loading alembic.
    "store/db.py": {"SELECT version_num FROM alembic_version"},
    # The DNS record of the DKIM key (RFC 6376 section 3.6.1).
    "notify/dkim.py": {"v=DKIM1; k=rsa; p="},
    "archive/site.py": {'<a href="{0}" rel="nofollow ugc noopener">{0}</a>'},
    # The CLDR pattern of an English date ("5 December 2026"), not words.
    "catalogs.py": {"d MMMM y"},
    # The layout of a log line: placeholders, not words.
    "logs.py": {"%(asctime)s %(levelname)s %(name)s: %(message)s"},
    # The outcome recorded on a message that is not answered (operators).
    "triage.py": {
        "ignored: from ourselves",
        "ignored: our own X-Loop",
        "ignored: a no-reply sender",
        "ignored: out-of-office reply",
    },
}
OPERATOR_CALLS = {"debug", "info", "warning", "error", "exception", "critical", "progress"}
OPERATOR_CALLS |= {"add_argument", "add_parser", "ArgumentParser", "compile"}


def sentences(tree: ast.AST) -> list[tuple[int, str]]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                skipped.add(id(body[0].value))
        elif isinstance(node, ast.Raise | ast.Return | ast.Assert):
            skipped |= {id(n) for n in ast.walk(node)}
        elif isinstance(node, ast.Call):
            function = node.func
            name = getattr(function, "attr", getattr(function, "id", ""))
            if name in OPERATOR_CALLS:
                skipped |= {id(n) for n in ast.walk(node)}
            for keyword in node.keywords:
                if keyword.arg in ("note", "help", "description"):
                    skipped |= {id(n) for n in ast.walk(keyword)}
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in skipped
        ):
            words = [w for w in node.value.split() if any(c.isalpha() for c in w)]
            if len(words) >= 3:
                found.append((node.lineno, node.value))
    return found


def test_no_sentence_a_participant_reads_is_written_in_python() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE)
        skipped = {"migrations", *COMMAND_LINE, *PROTOCOL, *MONITORING}
        if path.name in OPERATOR_ONLY or skipped & set(where.parts):
            continue
        allowed = NOT_PROSE.get(str(where), set())
        for line, text in sentences(ast.parse(path.read_text(encoding="utf-8"))):
            if text not in allowed:
                found.append(f"{where}:{line}: {text!r}")
    assert found == [], "\n".join(found)
