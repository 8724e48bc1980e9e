"""asrkt.transfer.gate / asrkt.bin.check_teacher: stage 4 refuses a degenerate teacher."""
from __future__ import annotations

import pytest
import torch

from asrkt.models import ModelConfig, build_model, save_checkpoint
from asrkt.utils.config import resolve
from test_train_data import add_features, make_lang


@pytest.fixture
def setup(tiny_data_dir, tmp_path):
    data = add_features(tiny_data_dir)
    return data, make_lang(data, tmp_path / "lang")


def teacher(path, lang, blank_bias: float):
    num_classes = len((lang / "tokens.txt").read_text().splitlines())
    cfg = resolve(ModelConfig, overrides={"type": "dnn", "dnn.hidden_layers": 1, "dnn.hidden_units": 8})
    torch.manual_seed(0)
    model = build_model(cfg, 40, num_classes)
    with torch.no_grad():
        model.output_layer.bias[0] += blank_bias  # a large bias: the blank wins every frame
    save_checkpoint(path, model, extra={"objective": "ctc"})
    return path


def test_blank_only_teacher_is_refused(setup, tmp_path, capsys):
    from asrkt.bin import check_teacher

    data, lang = setup
    model = teacher(tmp_path / "blank.pt", lang, blank_bias=100.0)
    with pytest.raises(SystemExit) as e:
        check_teacher.main(["--model", str(model), "--data-dir", str(data), "--lang-dir", str(lang)])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("ERROR: ") and "blank.pt: the teacher is degenerate" in err
    assert "dev ter 100.00% >= 95%" in err and "outputs only the blank" in err


def test_teacher_that_emits_tokens_passes_a_lenient_gate(setup, tmp_path):
    from asrkt.transfer.gate import check_teacher

    data, lang = setup
    model = teacher(tmp_path / "t.pt", lang, blank_bias=-100.0)  # never the blank
    result = check_teacher(model, data, lang, max_error_rate=1e9)
    assert result["metric"] == "ter" and result["error_rate"] > 0 and result["frames"] > 0
    with pytest.raises(Exception, match="the teacher is degenerate on .*dev ter"):
        check_teacher(model, data, lang, max_error_rate=95.0)  # a random teacher is far above 95 % TER
