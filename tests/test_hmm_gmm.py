"""Monophone GMM-HMM training with Kaldi's C++ (asrkt.hmm.gmm): synthetic features whose phones each have their
own Gaussian mean, so the right alignment is known; pdf targets read back by the frame_ce objective; priors;
utterances that cannot align are reported."""
from __future__ import annotations

import numpy as np
import pytest

from asrkt.hmm.kaldi import khg  # noqa: F401  (the wheels first, in their order)
from asrkt.hmm.gmm import (FeatureOptions, MonoModel, MonoOptions, add_deltas, ali_to_pdf, ali_to_phones,
                           dct_matrix, delta_scales, train_mono, write_alignments, write_targets)
from asrkt.hmm.lang import make_lang, read_symbols
from asrkt.hmm.priors import log_priors, pdf_counts, read_counts, write_counts
from asrkt.io import read_int_vectors, write_matrices
from asrkt.utils.errors import AsrktError

# every phone in several words and positions: phone boundaries inside a word are identifiable only so
PRON = {"ABA": ["AA", "B", "AA"], "BEE": ["B", "IY"], "CEE": ["K", "IY"], "ICK": ["IY", "K"], "KAB": ["K", "AA", "B"]}
WORDS = sorted(PRON)
LEXICON = "".join(f"{w} {' '.join(p)}\n" for w, p in PRON.items())
RAW = FeatureOptions(kind="raw", cmvn=False, delta_order=0)
FAST = MonoOptions(num_iters=8, max_iter_inc=6, tot_gauss=60, realign_iters=(1, 2, 3, 4, 6))


def make_corpus(root, n_utts=24, seed=0, name="train", short=()):
    """A lang dir and a data dir of synthetic features: every phone's frames are N(mean_phone, 0.3^2 I), the
    means far apart. Returns (lang_dir, data_dir, {utt: [(phone, num_frames), ...]})."""
    rng = np.random.default_rng(seed)
    lex = root / "lexicon.txt"
    lex.write_text(LEXICON)
    lang = root / "lang"
    if not lang.exists():
        make_lang(lex, lang)
    phones = read_symbols(lang / "phones.txt")
    dim = 8
    mrng = np.random.default_rng(123)  # the same means in every set
    means = {p: mrng.normal(0, 3, dim) for p in sorted(phones)}
    data = root / "data" / name
    data.mkdir(parents=True)
    text, truth, feats = {}, {}, {}
    for i in range(n_utts):
        utt = f"spk{i % 3}-{name}{i:03d}"
        words = list(rng.choice(WORDS, size=int(rng.integers(1, 4))))
        segs = [("SIL", int(rng.integers(8, 14)))]
        for w in words:
            segs += [(p, int(rng.integers(4, 9))) for p in PRON[w]]
        segs.append(("SIL", int(rng.integers(8, 14))))
        if utt in short:
            segs = [(p, 1) for p, _ in segs]  # one frame per phone: shorter than the HMMs
        x = np.concatenate([means[p] + 0.3 * rng.normal(size=(n, dim)) for p, n in segs]).astype(np.float32)
        text[utt], truth[utt], feats[utt] = " ".join(words), segs, x
    utts = sorted(text)
    (data / "text").write_text("".join(f"{u} {text[u]}\n" for u in utts))
    (data / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in utts))
    (data / "utt2num_frames").write_text("".join(f"{u} {len(feats[u])}\n" for u in utts))
    write_matrices(f"ark,scp:{data / 'feats.ark'},{data / 'feats.scp'}", {u: feats[u] for u in utts})
    return lang, data, truth


def phone_frames(truth):
    return [p for p, n in truth for _ in range(n)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("mono")
    lang, train, truth = make_corpus(root, n_utts=24, seed=0, name="train")
    _, dev, dev_truth = make_corpus(root, n_utts=6, seed=1, name="dev", short=("spk2-dev005",))
    alis = train_mono(train, lang, root / "exp", FAST, RAW, align_dirs=[dev])
    return root, lang, alis, truth, dev_truth


def test_alignment_recovers_the_known_phones(trained):
    root, lang, alis, truth, _ = trained
    model = MonoModel.load(root / "exp")
    id2phone = {i: p for p, i in read_symbols(lang / "phones.txt").items()}
    assert set(alis["train"]) == set(truth)
    agree = total = 0
    for utt, ali in alis["train"].items():
        ref = phone_frames(truth[utt])
        assert len(ali) == len(ref)
        # ali-to-phones gives the phone sequence (no optional silence between words: the data have none)
        assert [id2phone[p] for p in ali_to_phones(model, ali)] == [p for p, _ in truth[utt]]
        hyp = [id2phone[model.trans_model.transition_id_to_phone(int(t))] for t in ali]
        agree += sum(a == b for a, b in zip(hyp, ref))
        total += len(ref)
    assert agree / total > 0.9  # boundaries within a frame or so (measured: 0.93)
    info = (root / "exp" / "train_info.yaml").read_text()
    assert "iterations:" in info and (root / "exp" / "tree").is_file()
    assert model.am.num_gauss > model.num_pdfs  # mixed up


def test_failed_alignments_are_reported(trained, caplog):
    import yaml

    root, _, alis, _, dev_truth = trained
    assert "spk2-dev005" not in alis["dev"]  # 1 frame per phone: cannot pass 3-state HMMs
    assert len(alis["dev"]) == len(dev_truth) - 1
    info = yaml.safe_load((root / "exp" / "train_info.yaml").read_text())
    assert info["alignments"]["dev"]["failed"] == 1
    assert info["alignments"]["dev"]["failed_utts"] == ["spk2-dev005"]
    assert info["alignments"]["train"]["failed"] == 0


def test_pdf_targets_read_back_by_frame_ce(trained, tmp_path):
    from asrkt.targets.frames import FrameCeObjective

    root, _, alis, truth, _ = trained
    model = MonoModel.load(root / "exp")
    scp = write_alignments(alis["train"], tmp_path / "ali", nj=2)
    assert (tmp_path / "ali" / "ali.1.ark").is_file() and (tmp_path / "ali" / "ali.2.ark").is_file()
    back = dict(read_int_vectors(f"scp:{scp}"))
    assert back.keys() == alis["train"].keys()
    assert all(list(back[u]) == alis["train"][u] for u in back)
    tdir = write_targets(model, {"train": alis["train"], "dev": alis["dev"]}, tmp_path / "targets")
    assert int((tdir / "num_pdfs").read_text()) == model.num_pdfs
    obj = FrameCeObjective(targets_dir=tdir)
    assert obj.num_classes == model.num_pdfs
    utts = sorted(alis["train"])
    src = obj.target_source(root / "data" / "train", utts)
    for u in utts[:5]:
        assert src.targets[u].tolist() == ali_to_pdf(model, alis["train"][u]).tolist()
        assert len(src.targets[u]) == len(phone_frames(truth[u]))
    phones = dict(read_int_vectors(f"scp:{tdir / 'phones.scp'}"))
    assert list(phones[utts[0]]) == ali_to_phones(model, alis["train"][utts[0]])


def test_priors_from_alignment_counts(trained, tmp_path):
    root, _, alis, _, _ = trained
    model = MonoModel.load(root / "exp")
    pdfs = [ali_to_pdf(model, a) for a in alis["train"].values()]
    counts = pdf_counts(pdfs, model.num_pdfs)
    assert counts.sum() == sum(len(p) for p in pdfs)
    assert counts[int(pdfs[0][0])] >= 1
    lp = log_priors(counts)
    seen = counts > 0
    assert np.exp(lp[seen]).sum() == pytest.approx(1.0, abs=1e-6)
    assert lp[seen][0] == pytest.approx(np.log(counts[seen][0] / counts.sum()))
    if (~seen).any():
        assert (lp[~seen] > 0).all()  # unseen pdfs: a large prior, so their scaled likelihood is tiny
    path = write_counts(counts, tmp_path / "ali_train_pdf.counts")
    assert path.read_text().startswith("[ ") and (read_counts(path) == counts).all()
    with pytest.raises(AsrktError, match="no frames"):
        log_priors(np.zeros(3))


def test_hand_made_priors():
    c = pdf_counts([np.array([0, 0, 1, 2]), np.array([2, 2])], 4)
    assert c.tolist() == [2, 1, 3, 0]
    lp = log_priors(c)
    assert lp[:3] == pytest.approx(np.log([2 / 6, 1 / 6, 3 / 6]))
    with pytest.raises(AsrktError, match="outside"):
        pdf_counts([np.array([5])], 4)


def test_feature_transforms():
    d = dct_matrix(13, 40)
    assert d @ d.T == pytest.approx(np.eye(13), abs=1e-6)  # orthonormal rows (Kaldi's ComputeDctMatrix)
    s = delta_scales(2, 2)
    assert s[1] == pytest.approx(np.array([-2, -1, 0, 1, 2]) / 10.0)
    assert len(s[2]) == 9 and s[2].sum() == pytest.approx(0.0)
    x = np.arange(10, dtype=np.float32)[:, None]  # a ramp: delta 1 in the middle, delta-delta 0
    y = add_deltas(x)
    assert y.shape == (10, 3) and y[5, 1] == pytest.approx(1.0) and y[5, 2] == pytest.approx(0.0)


def test_cli_train_mono_writes_alignments_targets_and_counts(tmp_path):
    from asrkt.bin.train_mono import main
    from asrkt.hmm.priors import read_counts

    lang, train, truth = make_corpus(tmp_path, n_utts=12, seed=3, name="train")
    exp = tmp_path / "exp"
    args = ["--num-iters", "4", "--tot-gauss", "40", "--max-iter-inc", "3", "--realign-iters", "1 2 3",
            "--feat-kind", "raw", "--cmvn", "false", "--delta-order", "0", "--nj", "2",
            str(train), str(lang), str(exp)]
    main(args)
    assert (exp / "ali_train" / "ali.2.ark").is_file() and (exp / "ali_train" / "num_jobs").read_text() == "2\n"
    counts = read_counts(exp / "targets" / "ali_train_pdf.counts")
    assert counts.sum() == sum(len(phone_frames(t)) for t in truth.values())
    assert len(counts) == int((exp / "targets" / "num_pdfs").read_text())
    mtime = (exp / "final.mdl.pkl").stat().st_mtime_ns
    main(args)  # finished: reused
    assert (exp / "final.mdl.pkl").stat().st_mtime_ns == mtime
