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


def test_include_is_merged_under_the_including_file(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "model.yaml").write_text("lr: 0.3\ninner:\n  hidden: 5\n  act: tanh\n")
    f = tmp_path / "c.yaml"
    f.write_text("include: shared/model.yaml\ninner:\n  hidden: 7\n")
    cfg = _parse(["--config", str(f)])
    # the included values fill in, the including file wins key by key inside a mapping
    assert cfg.lr == 0.3 and cfg.inner.hidden == 7 and cfg.inner.act == "tanh"
    assert _parse(["--config", str(f), "--inner.act", "relu"]).inner.act == "relu"  # command line wins


def test_include_list_nested_and_later_wins(tmp_path):
    (tmp_path / "a.yaml").write_text("lr: 0.2\nflag: true\n")
    (tmp_path / "b.yaml").write_text("include: a.yaml\nlr: 0.4\n")
    (tmp_path / "c.yaml").write_text("include: [a.yaml, b.yaml]\ninner:\n  hidden: 1\n")
    cfg = _parse(["--config", str(tmp_path / "c.yaml")])
    assert cfg.lr == 0.4 and cfg.flag is True and cfg.inner.hidden == 1


def test_include_errors_name_the_files(tmp_path):
    (tmp_path / "c.yaml").write_text("include: missing.yaml\n")
    with pytest.raises(AsrktError, match=r"c\.yaml: included config file .*missing\.yaml not found"):
        _parse(["--config", str(tmp_path / "c.yaml")])
    (tmp_path / "x.yaml").write_text("include: y.yaml\n")
    (tmp_path / "y.yaml").write_text("include: x.yaml\n")
    with pytest.raises(AsrktError, match=r"include cycle: .*x\.yaml -> .*y\.yaml -> .*x\.yaml"):
        _parse(["--config", str(tmp_path / "x.yaml")])
    (tmp_path / "bad.yaml").write_text("include: {a: 1}\n")
    with pytest.raises(AsrktError, match="'include' must be a file name"):
        _parse(["--config", str(tmp_path / "bad.yaml")])
    (tmp_path / "u.yaml").write_text("bogus: 1\n")
    (tmp_path / "v.yaml").write_text("include: u.yaml\n")
    with pytest.raises(AsrktError, match="unknown config key 'bogus'"):
        _parse(["--config", str(tmp_path / "v.yaml")])


def test_recipe_student_configs_share_one_model_block():
    from pathlib import Path

    egs = Path(__file__).resolve().parents[1] / "egs"
    for corpus in ("digits", "an4", "TEMPLATE"):
        conf = egs / corpus / "conf"
        shared = config.load_config_file(conf / "student_model.yaml")["model"]
        for name in ("student_kt", "finetune", "student_scratch", "student_kt_reg"):
            text = (conf / f"{name}.yaml").read_text()
            assert "include: student_model.yaml" in text and "\nmodel:" not in text, f"{corpus}/{name}"
            assert config.load_config_file(conf / f"{name}.yaml")["model"] == shared
