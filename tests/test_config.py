"""asrkt.utils.config: defaults < config file < command line, unknown keys rejected, resume check."""
import argparse
from dataclasses import dataclass, field

import pytest

from asrkt.utils import config
from asrkt.utils.errors import AsrktError


@dataclass
class Inner:
    hidden: int = 3
    act: str = "relu"


@dataclass
class Outer:
    lr: float = 0.1
    inner: Inner = field(default_factory=Inner)
    flag: bool = False


def _parse(argv, tmp_path=None):
    p = argparse.ArgumentParser()
    config.add_config_arguments(p, Outer)
    return config.config_from_args(p.parse_args(argv), Outer)


def test_priority_defaults_file_command_line(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("lr: 0.5\ninner:\n  hidden: 7\n")
    cfg = _parse(["--config", str(f), "--inner.hidden", "9"])
    assert cfg.lr == 0.5 and cfg.inner.hidden == 9 and cfg.inner.act == "relu"


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("lr: 0.5\nbogus: 1\n")
    with pytest.raises(AsrktError, match=r"c\.yaml: unknown config key 'bogus'"):
        _parse(["--config", str(f)])


def test_type_and_bool_checked():
    with pytest.raises(AsrktError, match="must be true or false"):
        _parse(["--flag", "maybe"])
    with pytest.raises(AsrktError, match="must be an integer"):
        _parse(["--inner.hidden", "2.5"])


def test_resume_check_reports_differences(tmp_path):
    cfg = Outer()
    config.save_config(cfg, tmp_path / "config.yaml")
    config.check_same_config(tmp_path / "config.yaml", cfg)
    with pytest.raises(AsrktError, match=r"inner\.hidden: 3 -> 4"):
        config.check_same_config(tmp_path / "config.yaml", config.resolve(Outer, overrides={"inner.hidden": 4}))


def test_hash_is_stable_and_sensitive():
    assert config.config_hash(Outer()) == config.config_hash(Outer())
    assert config.config_hash(Outer()) != config.config_hash(Outer(lr=0.2))
