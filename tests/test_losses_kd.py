"""asrkt.losses.kd: the soft-target loss of record, against a hand computation."""
import math

import pytest
import torch

from asrkt.losses.kd import kd_loss_reference, kd_loss_sparse_reference, topk_log_probs
from asrkt.utils.errors import AsrktError


def test_dense_matches_hand_computation():
    # One frame, two classes, T = 2: p_T = softmax([2, 0] / 2), q_T = softmax([0, 0] / 2) = [.5, .5].
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[2.0, 0.0]])
    p1 = math.exp(1) / (math.exp(1) + 1)
    p = [p1, 1 - p1]
    kl = sum(pi * math.log(pi / 0.5) for pi in p)
    got = kd_loss_reference(student, teacher, temperature=2.0, alpha=0.5)
    assert got.item() == pytest.approx(0.5 * 4 * kl, rel=1e-6)


def test_logits_and_log_probs_give_the_same_loss():
    torch.manual_seed(0)
    s, t = torch.randn(5, 7), torch.randn(5, 7)
    assert torch.allclose(kd_loss_reference(s, t, 3.0), kd_loss_reference(s, t.log_softmax(-1), 3.0))


def test_mask_and_mean():
    torch.manual_seed(0)
    s, t = torch.randn(4, 6), torch.randn(4, 6)
    mask = torch.tensor([1, 1, 0, 0], dtype=torch.bool)
    assert torch.allclose(kd_loss_reference(s, t, mask=mask), kd_loss_reference(s[:2], t[:2]))


def test_sparse_with_all_classes_equals_dense_and_padding_has_no_nan_gradient():
    torch.manual_seed(0)
    s = torch.randn(3, 5, requires_grad=True)
    t = torch.randn(3, 5)
    idx, val = topk_log_probs(t, 5)
    assert torch.allclose(kd_loss_sparse_reference(s, idx, val, 2.0), kd_loss_reference(s, t, 2.0), atol=1e-6)
    val = val.clone()
    val[1] = float("-inf")  # an all-padding frame
    val[0, 3:] = float("-inf")
    loss = kd_loss_sparse_reference(s, idx, val, 2.0, reduction="sum")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    assert torch.all(s.grad[1] == 0)


def test_bad_input_errors():
    with pytest.raises(AsrktError, match="temperature must be > 0"):
        kd_loss_reference(torch.zeros(2, 3), torch.zeros(2, 3), temperature=0)
    with pytest.raises(AsrktError, match="differ in shape"):
        kd_loss_reference(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(AsrktError, match=r"must lie in \[0, 3\)"):
        kd_loss_sparse_reference(torch.zeros(2, 3), torch.tensor([[0], [3]]), torch.zeros(2, 1))
