"""Node configuration files (config/*.toml) and their precedence under command-line flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from khipu.cli import build_parser
from khipu.config import ConfigError, apply_config_file

REPO = Path(__file__).resolve().parents[2]


def parse(*argv: str):  # type: ignore[no-untyped-def]
    return build_parser().parse_args(["run", *argv])


@pytest.mark.parametrize("preset", ["dev", "mainnet"])
def test_shipped_presets_load(preset: str) -> None:
    args = parse("--config", str(REPO / "config" / f"{preset}.toml"))
    apply_config_file(args)
    assert args.network == preset
    assert args.datadir == Path.home() / ".khipu" / preset
    assert args.log_format == "logfmt"


def test_command_line_flags_win_over_the_file(tmp_path: Path) -> None:
    args = parse("--config", str(REPO / "config" / "dev.toml"), "--datadir", str(tmp_path))
    apply_config_file(args)
    assert args.datadir == tmp_path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[node]\nnetwork = 'dev'\ngenesis = 'x.json'\n", "not both"),
        ("[node]\ncolour = 'blue'\n", "unknown setting node.colour"),
        ("[node\n", "cannot read config file"),
        ("node = 3\n", "must be a table"),
    ],
)
def test_bad_config_files_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "node.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        apply_config_file(parse("--config", str(path)))


def execution_from(tmp_path: Path, text: str, *argv: str) -> int | None:
    from khipu.commands.import_chain import execution_workers

    path = tmp_path / "node.toml"
    path.write_text(text)
    args = parse("--config", str(path), *argv)
    apply_config_file(args)
    return execution_workers(args)


def test_execution_settings_from_the_file_and_the_flags(tmp_path: Path) -> None:
    import os

    assert execution_from(tmp_path, "") == (os.cpu_count() or 1)  # parallel by default
    assert execution_from(tmp_path, "[execution]\nworkers = 3\n") == 3
    assert execution_from(tmp_path, "[execution]\nworkers = 3\n", "--workers", "1") == 1
    assert execution_from(tmp_path, "[execution]\nserial = true\n") is None
    assert execution_from(tmp_path, "[execution]\nserial = false\n", "--serial") is None
    assert execution_from(tmp_path, "[execution]\nserial = false\nworkers = 2\n") == 2
    shipped = parse("--config", str(REPO / "config" / "dev.toml"))
    apply_config_file(shipped)
    assert shipped.serial is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[execution]\nworkers = 0\n", "positive integer"),
        ("[execution]\nworkers = 'two'\n", "positive integer"),
        ("[execution]\nserial = 'yes'\n", "true or false"),
    ],
)
def test_bad_execution_settings_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        execution_from(tmp_path, text)


def test_workers_below_one_are_refused_on_the_command_line() -> None:
    with pytest.raises(SystemExit):
        parse("--workers", "0")
