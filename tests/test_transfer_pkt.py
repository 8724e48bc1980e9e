"""PKT (asrkt.transfer.pkt, term 'pkt' in asrkt.train.methods): zero for identical representations, a gradient
that moves a perturbed student back, layers of different sizes, and a short Trainer run with an on-the-fly
teacher."""
from __future__ import annotations

import pytest
import torch

import asrkt.train.methods  # noqa: F401 (registers pkt)
from asrkt.data.dataset import UtteranceDataset
from asrkt.models import build_model, save_checkpoint
from asrkt.train.terms import ModelOutput, build_term
from asrkt.train.trainer import Trainer, TrainConfig
from asrkt.transfer.pkt import conditional_probabilities, pkt_loss, select_frames
from asrkt.utils.config import resolve
from asrkt.utils.errors import AsrktError
from test_train_trainer import TINY_DNN, config, read_summary, setup  # noqa: F401 (fixture)


def test_identical_representations_give_zero_loss():
    x = torch.randn(40, 16)
    assert pkt_loss(x, x).item() == 0.0
    # a scaled copy has the same cosine kernel: still zero; an unrelated one does not
    assert pkt_loss(3.0 * x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert pkt_loss(torch.randn(40, 16), x).item() > 1e-3
    p = conditional_probabilities(x)
    assert torch.allclose(p.sum(1), torch.ones(40)) and bool((p >= 0).all())


def test_gradient_moves_a_perturbed_student_back():
    torch.manual_seed(0)
    teacher = torch.randn(64, 12)
    student = (teacher + 0.8 * torch.randn(64, 12)).requires_grad_(True)
    opt = torch.optim.SGD([student], lr=5.0)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = pkt_loss(student, teacher)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(b <= a + 1e-6 for a, b in zip(losses, losses[1:]))


def test_layers_of_different_sizes():
    torch.manual_seed(1)
    teacher = torch.randn(50, 32)
    proj = torch.nn.Linear(8, 8)
    student_in = torch.randn(50, 8)
    opt = torch.optim.Adam(proj.parameters(), lr=0.05)
    first = None
    for _ in range(40):
        opt.zero_grad()
        loss = pkt_loss(proj(student_in), teacher)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert torch.isfinite(loss) and loss.item() < first


def test_term_masks_padding_subsamples_and_checks_frame_rates():
    term = build_term({"name": "pkt", "weight": 0.5, "max_frames": 5})
    lengths = torch.tensor([6, 3])
    h = torch.randn(2, 6, 4)
    h_teacher = h.clone()
    h_teacher[1, 3:] = 100.0  # padding: never used
    out = ModelOutput(torch.zeros(2, 6, 3), lengths, [h], ModelOutput(torch.zeros(2, 6, 3), lengths, [h_teacher]))
    batch = type("B", (), {"utts": ["a", "b"]})()
    value, count = term(out, batch)
    assert count == 5 and value.item() == pytest.approx(0.0, abs=1e-6)
    assert torch.equal(select_frames(9, 5, 3), select_frames(9, 5, 3)) and select_frames(4, 5, 3) is None
    out.teacher = ModelOutput(torch.zeros(2, 2, 3), torch.tensor([2, 1]), [torch.randn(2, 2, 4)])
    with pytest.raises(AsrktError, match="share the frame rate"):
        term(out, batch)


def test_trainer_with_ctc_and_pkt_writes_its_columns(setup, tmp_path):
    data, lang = setup
    teacher_exp = tmp_path / "teacher"
    Trainer(config(**TINY_DNN, **{"schedule.max_epochs": 1}), data, data, teacher_exp, lang_dir=lang).run()
    cfg = config(**{"loss.terms": [{"name": "ctc"}, {"name": "pkt", "weight": 0.5, "max_frames": 64}],
                    "schedule.max_epochs": 2, "schedule.min_epochs": 2})
    exp = tmp_path / "student"
    Trainer(cfg, data, data, exp, lang_dir=lang, teacher_model=teacher_exp / "final.pt").run()
    rows = read_summary(exp)
    assert list(rows[0])[:7] == ["epoch", "lr", "train_loss", "train_ctc", "train_pkt", "valid_loss", "valid_ctc"]
    assert "valid_pkt" in rows[0] and all(float(r["valid_pkt"]) > 0 for r in rows)
    # the same through the config key loss.teacher_model (what a recipe config gives)
    cfg2 = config(**{"loss.terms": [{"name": "pkt"}], "loss.teacher_model": str(teacher_exp / "final.pt"),
                     "schedule.max_epochs": 1})
    Trainer(cfg2, data, data, tmp_path / "by_config", lang_dir=lang).run()
    assert "valid_pkt" in read_summary(tmp_path / "by_config")[0]


def test_teacher_at_another_frame_rate_is_refused(setup, tmp_path):
    data, lang = setup
    tcfg = resolve(TrainConfig, overrides={**TINY_DNN, "model.subsampling": 2})
    num_classes = len((lang / "tokens.txt").read_text().splitlines())
    feat_dim = UtteranceDataset(data).feat_dim
    save_checkpoint(tmp_path / "t.pt", build_model(tcfg.model, feat_dim, num_classes))
    cfg = config(**{"loss.terms": [{"name": "ctc"}, {"name": "pkt"}], "schedule.max_epochs": 1})
    with pytest.raises(AsrktError, match="different frame rates"):
        Trainer(cfg, data, data, tmp_path / "x", lang_dir=lang, teacher_model=tmp_path / "t.pt").run()
