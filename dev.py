#!/usr/bin/env python3
"""The two commands of the README, for a fresh clone with only Python 3.11+:

    python3 dev.py run     install into .venv, compile the catalogs, then `mailflow run`
                           on ./config.toml
    python3 dev.py test    install into .venv, compile the catalogs, then ruff, and mypy
                           while the whole test suite runs
    python3 dev.py catalogs  extract the templates' sentences into mailflow/locale/*.pot,
                           update every language's .po from it, compile the .mo files

Extra arguments go to `mailflow run` or to pytest. The install is redone
only when pyproject.toml changes. The tests run on pytest-xdist workers,
twice as many as there are cores (the tests mostly wait on sockets, child
processes and the databases); MAILFLOW_TEST_WORKERS=N sets the number, and
`python3 dev.py test -n 0` runs them one after another in one process.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"


def ensure_environment() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be started by an older python3
        sys.exit("mailflow needs Python 3.11 or newer")
    if not PYTHON.exists():
        print("creating .venv ...", flush=True)
        venv.create(VENV, with_pip=True)
    stamp = VENV / ".installed"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    print("installing mailflow and its test tools into .venv ...", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    project = ["-e", f"{ROOT}[test,postgres]"]
    # uv installs the same in a quarter of pip's time (13 s against 48 s on
    # a fresh clone here), a newcomer's first wait; pip does it if uv cannot.
    # Compiled, as pip does: where PYTHONDONTWRITEBYTECODE is set, every
    # process of the suite would otherwise compile the packages anew.
    uv = [str(VENV / "bin" / "uv"), "pip", "install", "--quiet", "--python", str(PYTHON)]
    if subprocess.call([*pip, "uv"]) == 0 and (
        subprocess.call([*uv, "--compile-bytecode", *project]) == 0
    ):
        stamp.write_text(wanted)
        return
    print("uv could not install; installing with pip ...", flush=True)
    subprocess.run([*pip, *project], check=True)
    stamp.write_text(wanted)


def run(arguments: list[str]) -> int:
    for step in compiled_catalogs():
        subprocess.call(step, cwd=ROOT)
    return subprocess.call([str(PYTHON), "-m", "mailflow", "run", *arguments], cwd=ROOT)


def workers(arguments: list[str]) -> list[str]:
    """The pytest-xdist options, unless the arguments choose for themselves.
    Tests are handed to a worker one or two at a time as it finishes them,
    not in long runs, so the long tests spread over the workers instead of
    queueing on one; the tests of one private server (Dovecot, Postfix,
    Chromium, nginx: ``xdist_group``) share one worker, which starts that
    server once instead of every worker starting its own."""
    if any(a.startswith(("-n", "--numprocesses")) or a.endswith("no:xdist") for a in arguments):
        return []
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count = os.environ.get("MAILFLOW_TEST_WORKERS") or str(2 * (cores or 1))
    return ["-n", count, "--dist", "loadgroup", "--maxschedchunk", "1"]


def compiled_catalogs() -> list[list[str]]:
    """The steps that compile each domain's .po into the .mo the service
    reads (not committed; a .po newer than its .mo would be compiled again
    in memory by every process that renders that language, test services
    and subprocesses alike)."""
    pybabel = [str(VENV / "bin" / "pybabel"), "-q", "compile", "-d", str(LOCALE)]
    return [[*pybabel, "-D", domain] for domain in DOMAINS]


def test(arguments: list[str]) -> int:
    steps = [
        *compiled_catalogs(),
        [str(VENV / "bin" / "ruff"), "check", "mailflow", "tests", "bench", "dev.py"],
    ]
    for step in steps:
        _show(step)
        code = subprocess.call(step, cwd=ROOT)
        if code:
            return code
    # mypy checks while the tests run (a fresh clone's first check takes
    # ~10 s); its verdict is printed, and counts, once they are done.
    mypy = [str(VENV / "bin" / "mypy"), "mailflow", "bench"]
    checking = subprocess.Popen(
        mypy, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    pytest = [str(PYTHON), "-m", "pytest", *workers(arguments), *arguments]
    _show(pytest)
    try:
        code = subprocess.call(pytest, cwd=ROOT, env=scratch_in_memory(os.environ))
    except BaseException:
        checking.kill()  # interrupted (Ctrl-C): the check goes too
        raise
    checked, _ = checking.communicate()
    _show(mypy)
    print(checked, end="", flush=True)
    return code or checking.returncode


def scratch_in_memory(environment: os._Environ[str]) -> dict[str, str]:
    """The tests' temporary files (spools, outboxes, SQLite databases, sites:
    thousands of small files, each fsynced and soon deleted) in memory, on
    /dev/shm, unless TMPDIR says where. On a disk mounted with online discard,
    as here, fsync and unlink were half a minute of a five-minute suite. The
    tests cannot cut the power, so a disk shows them nothing more; the
    disk-fault tests bring their own faults (an LD_PRELOAD shim, a 2 MB tmpfs)."""
    scratch = dict(environment)
    memory = Path("/dev/shm")
    if (
        "TMPDIR" not in scratch
        and memory.is_dir()
        and os.access(memory, os.W_OK | os.X_OK)
        and shutil.disk_usage(memory).free > 2 * 2**30  # not a container's 64 MB
    ):
        scratch["TMPDIR"] = str(memory)
    return scratch


def _show(step: list[str]) -> None:
    print(
        "$ " + " ".join(Path(step[0]).name if i == 0 else a for i, a in enumerate(step)), flush=True
    )


LOCALE = ROOT / "mailflow" / "locale"
# Each gettext domain and what its extraction reads: "mailflow" is every
# sentence we write (the templates, through babel.cfg); "words" is what
# people type (field names, action words, values), marked in Python with
# pgettext("field", "Priority area") (mailflow/words.py) and kept apart for
# its translators.
DOMAINS = {
    "mailflow": ["-F", "babel.cfg", "."],
    "words": ["--no-default-keywords", "-k", "pgettext:1c,2", "mailflow"],
}
# The shipped languages (mailflow/languages.py SHIPPED) as Babel names
# their folders; English is the source and needs no catalog of its own.
CATALOG_LOCALES = ("es", "zh_Hans", "zh_Hant", "id", "ja", "ko", "ms", "ru", "th", "vi")


def catalogs(arguments: list[str]) -> int:
    """Extract, then update (or start) each language's .po, then compile.
    A translator edits only the .po files; the .mo files are not committed
    (the wheel's build compiles them, see setup.py). Locations name the
    template without a line number, and a run that finds nothing new leaves
    every file as it was (no new dates): several people translate at once,
    and their catalogs must merge."""
    pybabel = [str(VENV / "bin" / "pybabel"), "-q"]
    for domain, sources in DOMAINS.items():
        template = LOCALE / f"{domain}.pot"
        before = template.read_text(encoding="utf-8") if template.exists() else ""
        extract = [*pybabel, "extract", "--add-comments=Translators:"]
        extract += ["--add-location=file", "--sort-by-file", "--project=mailflow"]
        code = subprocess.call([*extract, "-o", str(template), *sources], cwd=ROOT)
        if code:
            return code
        if undated(template.read_text(encoding="utf-8")) == undated(before):
            template.write_text(before, encoding="utf-8")
        # English has a words catalog too: the other English words people
        # write for a field or an action ("Substitute:", "ok").
        locales = ("en", *CATALOG_LOCALES) if domain == "words" else CATALOG_LOCALES
        for locale in locales:
            exists = (LOCALE / locale / "LC_MESSAGES" / f"{domain}.po").exists()
            # No fuzzy matching: a guess from a similar sentence reads as a
            # translation and says something else (the catalog test refuses it).
            update = ["update", "--ignore-pot-creation-date", "--no-fuzzy-matching"]
            verb = update if exists else ["init"]
            where = ["-D", domain, "-i", str(template), "-d", str(LOCALE), "-l", locale]
            code = subprocess.call([*pybabel, *verb, *where], cwd=ROOT)
            if code:
                return code
        code = subprocess.call([*pybabel, "compile", "-D", domain, "-d", str(LOCALE)], cwd=ROOT)
        if code:
            return code
    return 0


def undated(catalog: str) -> str:
    """A catalog without the line that changes at every extraction."""
    return "".join(
        line for line in catalog.splitlines(True) if not line.startswith('"POT-Creation-Date:')
    )


def main() -> int:
    commands = {"run": run, "test": test, "catalogs": catalogs}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    ensure_environment()
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
