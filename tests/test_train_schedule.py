"""asrkt.train.schedule: Kaldi nnet1 newbob on scripted dev-loss sequences."""
import pytest

from asrkt.train.schedule import Newbob, NewbobConfig
from asrkt.utils.errors import AsrktError


def run(losses, initial=10.0, lr=1.0, **cfg):
    sched = Newbob(NewbobConfig(**cfg), lr)
    sched.start(initial)
    decisions = []
    for loss in losses:
        decisions.append(sched.step(loss))
        if decisions[-1].stop:
            break
    return sched, decisions


def test_keeps_lr_then_halves_then_stops():
    # rel. improvements: 0.1, 0.0556, 0.0059 (< 0.01: start halving), 0.0059, 0.00012 (< 0.001: stop)
    sched, d = run([9.0, 8.5, 8.45, 8.40, 8.399, 5.0], min_epochs=0)
    assert [x.lr_used for x in d] == [1.0, 1.0, 1.0, 0.5, 0.25]
    assert [x.accepted for x in d] == [True] * 5
    assert d[-1].stop and "end_halving_impr" in d[-1].reason
    assert len(d) == 5 and sched.done and sched.best_epoch == 5 and sched.best_loss == 8.399


def test_worse_epoch_is_rejected_and_starts_halving_then_stops_when_halving():
    sched, d = run([9.0, 9.5, 8.8, 8.9], min_epochs=1)
    assert [x.accepted for x in d] == [True, False, True, False]
    # rejection: rel_impr 0 -> halving starts (lr halved); accepted 8.8 (impr 0.022) halves again;
    # rejection while halving: rel_impr 0 < end_halving_impr -> stop
    assert [x.lr_used for x in d] == [1.0, 1.0, 0.5, 0.25]
    assert d[1].rel_impr == 0.0 and d[1].next_lr == 0.5 and not d[1].stop
    assert d[3].stop and sched.best_epoch == 3 and sched.best_loss == 8.8


def test_restart_after_convergence_trains_on_at_the_initial_lr_against_the_last_accepted_loss():
    sched, d = run([9.0, 9.5, 8.8, 8.9], min_epochs=1)  # converged at epoch 4 (as above), best 8.8
    sched.restart(1.0)  # e.g. DILS deepened the net
    assert not sched.done and not sched.halving and sched.stop_reason == "" and sched.lr == 1.0
    worse, better = sched.step(8.85), None
    assert not worse.accepted and worse.lr_used == 1.0 and worse.next_lr == 0.5 and not worse.stop  # halving anew
    better = sched.step(8.0)
    assert better.accepted and better.epoch == 6 and sched.best_epoch == 6 and sched.best_loss == 8.0


def test_min_epochs_accepts_and_continues():
    sched, d = run([10.5, 10.4, 9.0, 8.999], min_epochs=3, max_epochs=10)
    # epochs 1, 2 are accepted although worse than the reference (nnet1: iter <= min_iters)
    assert [x.accepted for x in d] == [True, True, True, True]
    assert sched.best_loss == 8.999 and d[-1].stop


def test_min_epochs_defers_the_stop_without_halving():
    sched, d = run([9.0, 8.0, 7.999, 7.9985, 7.0, 6.9999], start_halving_impr=0.2, min_epochs=3, max_epochs=10)
    # halving from epoch 1 (impr 0.1 < 0.2); epoch 3's tiny improvement would stop, but min_epochs=3:
    # nnet1 continues without halving; epoch 4 stops.
    assert [x.lr_used for x in d] == [1.0, 0.5, 0.25, 0.25]
    assert d[2].next_lr == 0.25 and not d[2].stop and d[3].stop


def test_max_epochs_and_nan_rejected():
    sched, d = run([9.0, float("nan"), 8.0], max_epochs=3, min_epochs=0)
    assert [x.accepted for x in d] == [True, False, True]
    assert d[-1].stop and "max_epochs" in d[-1].reason


def test_state_roundtrip_continues_identically():
    losses = [9.0, 8.5, 8.45, 8.40, 8.399]
    _, full = run(losses, min_epochs=0)
    a, d1 = run(losses[:2], min_epochs=0)
    b = Newbob(NewbobConfig(min_epochs=0), 123.0)
    b.load_state_dict(a.state_dict())
    rest = [b.step(x) for x in losses[2:]]
    assert [(x.accepted, x.lr_used, x.stop) for x in d1 + rest] == [(x.accepted, x.lr_used, x.stop) for x in full]


def test_bad_config_and_initial_loss():
    with pytest.raises(AsrktError, match="halving_factor"):
        Newbob(NewbobConfig(halving_factor=1.5), 1.0)
    with pytest.raises(AsrktError, match="min_epochs"):
        Newbob(NewbobConfig(min_epochs=5, max_epochs=2), 1.0)
    with pytest.raises(AsrktError, match="initial model's dev loss is nan"):
        Newbob(NewbobConfig(), 1.0).start(float("nan"))


def test_plateau_holds_the_lr_and_does_not_stop():
    # AN4's teacher on main at 3713aea: dev loss creeping down by < 0.1 % while the TER stays at 100 % -> newbob
    # halved and stopped after 6 epochs. On the plateau (metric >= 95 %) the lr is held and nothing stops.
    sched = Newbob(NewbobConfig(min_epochs=0, max_epochs=50), 1.0)
    sched.start(10.0)
    losses = [9.999, 9.998, 9.997, 9.996, 9.995, 9.994, 9.993, 9.0, 8.0]
    metrics = [100.0] * 7 + [60.0, 40.0]
    d = [sched.step(x, m) for x, m in zip(losses, metrics)]
    assert [x.lr_used for x in d] == [1.0] * 9 and not any(x.stop for x in d)
    assert all(x.plateau for x in d[:7]) and not d[7].plateau
    # the same losses without a metric: newbob halves at once and stops on the tiny improvements
    sched = Newbob(NewbobConfig(min_epochs=0, max_epochs=50), 1.0)
    sched.start(10.0)
    d = [sched.step(x) for x in losses[:2]]
    assert d[0].next_lr == 0.5 and d[1].stop


def test_plateau_is_bounded_and_max_epochs_is_a_cap():
    sched = Newbob(NewbobConfig(min_epochs=0, max_epochs=50, plateau_max_epochs=3), 1.0)
    sched.start(10.0)
    d = [sched.step(9.999 - i * 1e-4, 100.0) for i in range(5)]
    assert [x.plateau for x in d[:4]] == [True, True, True, False] and d[4].stop
    assert NewbobConfig().max_epochs >= 50  # a safety cap, not the budget


def test_patience_rule_keeps_the_best_epoch():
    sched = Newbob(NewbobConfig(rule="patience", patience=2, min_epochs=0, max_epochs=50), 1.0)
    sched.start(10.0)
    d = [sched.step(x) for x in [9.0, 8.0, 8.5, 7.0, 7.5, 7.6]]
    assert [x.accepted for x in d[:6]] == [True] * 6  # training continues from every epoch
    assert [x.best for x in d[:6]] == [True, True, False, True, False, False]
    assert [x.lr_used for x in d[:6]] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25]
    assert d[5].stop and "patience" in d[5].reason and sched.best_epoch == 4 and sched.best_loss == 7.0
    with pytest.raises(AsrktError, match="schedule.rule"):
        Newbob(NewbobConfig(rule="cosine"), 1.0)
