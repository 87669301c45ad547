"""Node configuration files (config/*.toml) and their precedence under command-line flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from khipu.cli import build_parser
from khipu.config import ConfigError, apply_config_file, select_chain, storage_config
from khipu.storage.kesque import KesqueConfig

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


def storage_from(tmp_path: Path, text: str, *argv: str) -> KesqueConfig:
    path = tmp_path / "node.toml"
    path.write_text(text)
    args = parse("--config", str(path), *argv)
    apply_config_file(args)
    return storage_config(args)


def test_storage_settings_from_the_file_and_the_flags(tmp_path: Path) -> None:
    default = KesqueConfig()
    assert storage_from(tmp_path, "") == default
    text = (
        "[storage]\ncache_mib = { account = 128, td = 0 }\nindex_sync_mib = 64\n"
        "index_background_entries = 1000\n"
    )
    config = storage_from(tmp_path, text)
    assert config.cache_bytes_of("account") == 128 << 20
    assert config.cache_bytes_of("td") == 0
    assert config.cache_bytes_of("storage") == default.cache_bytes_of("storage")  # not named
    assert config.index_sync_bytes == 64 << 20
    assert config.hash_index_background_entries == 1000
    flagged = storage_from(
        tmp_path, text, "--storage.cache-mib", "storage=3", "--storage.index-sync-mib", "8"
    )
    assert flagged.cache_bytes_of("storage") == 3 << 20
    assert flagged.cache_bytes_of("account") == default.cache_bytes_of("account")  # flag wins
    assert flagged.index_sync_bytes == 8 << 20
    assert flagged.hash_index_background_entries == 1000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[storage]\ncache_mib = { accounts = 1 }\n", "no topic 'accounts'"),
        ("[storage]\ncache_mib = { account = -1 }\n", "must be MiB >= 0"),
        ("[storage]\ncache_mib = 64\n", "must be a table"),
        ("[storage]\nindex_sync_mib = 0\n", "index_sync_mib must be >= 1"),
        ("[storage]\nindex_background_entries = true\n", "index_background_entries must be"),
        ("[storage]\ncache = 1\n", "unknown setting storage.cache"),
    ],
)
def test_bad_storage_settings_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        storage_from(tmp_path, text)


def test_a_malformed_cache_flag_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--storage.cache-mib", "account:64")
    assert "expected TOPIC=MIB" in capsys.readouterr().err


def test_the_writer_opens_its_store_with_the_storage_settings(tmp_path: Path) -> None:
    from khipu.storage.chain_store import ChainStore

    args = parse(
        "--network", "dev", "--datadir", str(tmp_path / "dev"), "--storage.cache-mib", "account=3"
    )
    selection = select_chain(args)
    store = ChainStore.open(
        selection.datadir, selection.genesis, selection.genesis_json, config=selection.storage
    )
    try:
        assert store.kesque.topic("account").cache.capacity_bytes == 3 << 20
        assert store.kesque.topic("storage").cache.capacity_bytes == 64 << 20
    finally:
        store.close()


@pytest.mark.parametrize("preset", ["dev", "mainnet"])
def test_the_presets_commented_storage_settings_are_the_defaults(
    preset: str, tmp_path: Path
) -> None:
    lines = (REPO / "config" / f"{preset}.toml").read_text().splitlines()
    start = lines.index("[storage]")
    commented = [line.removeprefix("# ") for line in lines[start + 1 :] if line.startswith("# ")]
    text = "\n".join(["[storage]", *commented[:3]]) + "\n"
    assert storage_from(tmp_path, text) == KesqueConfig()
