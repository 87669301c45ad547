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
