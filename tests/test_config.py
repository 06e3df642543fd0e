"""Configuration (SPEC sections 8-9): the embedded default works as it is;
a wrong key, type or value stops the program with a message naming the
key, the file and what is allowed; MAILFLOW_<SECTION>_<KEY> overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailflow.cli import EX_CONFIG, main
from mailflow.config import load_settings
from mailflow.economies import Economies
from mailflow.errors import ConfigError

REPO_CONFIG = Path(__file__).resolve().parents[1] / "config.toml"


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mailflow.toml"
    path.write_text(text)
    return path


def test_the_embedded_default_loads_with_paths_beside_it() -> None:
    """The committed config.toml is valid; relative paths are resolved
    against its folder, the SQLite URL too."""
    settings = load_settings(REPO_CONFIG, environ={})
    root = REPO_CONFIG.parent
    assert settings.smtp.port == 8025 and settings.outbound.transport == "maildir"
    assert settings.outbound.maildir == root / "var" / "outbox"
    assert settings.database.url == f"sqlite:///{root}/var/mailflow.db"
    assert settings.addresses.register_ == "register"
    assert settings.imap is None


def test_unknown_key_names_key_file_and_allowed(tmp_path: Path) -> None:
    path = config(tmp_path, "[smtp]\nprot = 25\n")
    with pytest.raises(ConfigError) as error:
        load_settings(path, environ={})
    message = str(error.value)
    assert str(path) in message and "[smtp] prot" in message
    assert "host" in message and "lmtp" in message  # what is allowed


def test_unknown_section_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[smpt\]"):
        load_settings(config(tmp_path, "[smpt]\nport = 25\n"), environ={})


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[smtp\] port") as error:
        load_settings(config(tmp_path, '[smtp]\nport = "25"\n'), environ={})
    assert "integer" in str(error.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[smtp]\nport = 70000\n", "[smtp] port"),
        ('[outbound]\ntransport = "pigeon"\n', "[outbound] transport"),
        ('[workflow]\ndaily_summary = "every morning"\n', "[workflow] daily_summary"),
        ('[admin]\naddresses = ["not an address"]\n', "[admin] addresses"),
        ('[workflow]\nno_focal_point = "nobody"\n', "[workflow] no_focal_point"),
        ("[economies.XX]\ntravel_eligible = true\n", "[economies.XX]"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(config(tmp_path, text), environ={})
    assert key in str(error.value)


def test_environment_overrides_any_key(tmp_path: Path) -> None:
    path = config(tmp_path, "[smtp]\nport = 2525\n")
    settings = load_settings(
        path,
        environ={
            "MAILFLOW_SMTP_PORT": "2626",
            "MAILFLOW_COMMENTS_MODERATION": "false",
            "MAILFLOW_ADMIN_ADDRESSES": '["boss@example.org"]',
            "MAILFLOW_ECONOMIES_CL_FOCAL_POINTS": '["focal.cl@example.org"]',
        },
    )
    assert settings.smtp.port == 2626
    assert settings.comments.moderation is False
    assert settings.admin.addresses == ["boss@example.org"]
    chile = Economies.with_overrides(settings.economy_overrides()).get("CL")
    assert chile.focal_points == ("focal.cl@example.org",)
    assert chile.travel_eligible is True  # untouched keys keep the built-in value


def test_a_wrong_environment_variable_names_itself(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MAILFLOW_SMTP_PORTT"):
        load_settings(config(tmp_path, ""), environ={"MAILFLOW_SMTP_PORTT": "1"})
    with pytest.raises(ConfigError, match="MAILFLOW_SMTP_PORT"):
        load_settings(config(tmp_path, ""), environ={"MAILFLOW_SMTP_PORT": "many"})


def test_cli_stops_with_the_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A command given a bad config exits non-zero and says what to fix."""
    path = config(tmp_path, "[limits]\nmax_message_bytes = -1\n")
    assert main(["economies", "--config", str(path)]) == EX_CONFIG
    error = capsys.readouterr().err
    assert "[limits] max_message_bytes" in error and str(path) in error


def test_missing_config_file_says_how_to_choose_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cases", "--config", str(tmp_path / "nope.toml")]) == EX_CONFIG
    assert "MAILFLOW_CONFIG" in capsys.readouterr().err


def test_economies_command_lists_all_21(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A copy: the command reads the roster from the database, which the
    # repository's config keeps under var/ beside the file.
    copy = tmp_path / "config.toml"
    copy.write_text(REPO_CONFIG.read_text())
    assert main(["economies", "--config", str(copy)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 22
    assert any(line.startswith("VN ") and "Viet Nam" in line and " yes " in line for line in lines)
