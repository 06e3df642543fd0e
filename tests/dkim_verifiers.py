"""Two independent DKIM verifiers for the tests of outgoing mail: dkimpy
(the library mailflow signs with) and Perl's Mail::DKIM (Debian's
libmail-dkim-perl), so a signature is accepted by more than its own
author. Neither asks DNS: the record `mailflow dkim` printed answers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import dkim
import pytest

from mailflow.cli import main
from mailflow.config import Settings

# Mail::DKIM asks DNS for the key; here the record `mailflow dkim` printed
# answers instead, for its own name only. Prints one result per file.
VERIFY_PERL = r"""
use strict; use warnings;
use Mail::DKIM::Verifier; use Net::DNS;
my $record = shift @ARGV;
my $published = Net::DNS::RR->new($record);
no warnings 'redefine';
*Mail::DKIM::DNS::query = sub {
    my ($name, $type) = @_;
    return lc($name) eq lc($published->owner) ? ($published) : ();
};
for my $file (@ARGV) {
    open(my $fh, '<:raw', $file) or die "$file: $!";
    my $verifier = Mail::DKIM::Verifier->new;
    while (my $line = <$fh>) { $line =~ s/\r?\n\z/\r\n/; $verifier->PRINT($line); }
    $verifier->CLOSE;
    print $verifier->result, "\n";
}
"""


def dns_record(settings: Settings, capsys: pytest.CaptureFixture[str]) -> str:
    """The DNS record `mailflow dkim` prints for ``settings``."""
    capsys.readouterr()  # what came before
    assert main(["dkim", "--config", str(settings.source)]) == 0
    return capsys.readouterr().out.strip()


def record_value(record: str) -> bytes:
    """The TXT value as a resolver returns it: the strings joined."""
    return "".join(re.findall(r'"([^"]*)"', record)).encode()


def dkimpy_verifies(raw: bytes, record: str) -> bool:
    """dkimpy's verdict, with ``record`` (as `mailflow dkim` prints it)
    answering for its own name in place of DNS."""
    name = record.split()[0].rstrip(".").encode() + b"."
    published = record_value(record)
    return bool(dkim.verify(raw, dnsfunc=lambda asked, **_: published if asked == name else None))


def mail_dkim_results(files: list[Path], record: str) -> list[str]:
    """Mail::DKIM's result for each file ("pass", "fail", ...), or the test
    skipped where Perl's Mail::DKIM is missing (a failure in CI)."""
    if (
        shutil.which("perl") is None
        or subprocess.run(
            ["perl", "-MMail::DKIM::Verifier", "-e1"], capture_output=True, check=False
        ).returncode
    ):
        why = "Mail::DKIM is not installed (apt-get install libmail-dkim-perl)"
        if os.environ.get("MAILFLOW_TEST_REQUIRE_MAIL_DKIM") == "1":
            pytest.fail(why)
        pytest.skip(why)
    done = subprocess.run(
        ["perl", "-e", VERIFY_PERL, record, *map(str, files)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.split()
