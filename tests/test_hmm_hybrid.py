"""The hybrid decoder of the frame_ce objective (asrkt.hmm.decode.HybridDecoder, asrkt.bin.make_graph): a tiny
GMM system on synthetic features; "DNN posteriors" made from the GMM's own likelihoods by Bayes' rule with the
alignment priors must decode to the GMM decodable's words (posterior / prior = likelihood / p(x), and the per-frame
p(x) does not change the best path)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_hmm_gmm import make_corpus

from asrkt.decode.search import DecodeConfig
from asrkt.hmm.decode import (HYBRID_INFO, HclgDecoder, HybridDecoder, gmm_loglikes, read_hybrid_info,
                              words_of)
from asrkt.hmm.gmm import GmmFeatures, MonoModel
from asrkt.hmm.lang import read_symbols
from asrkt.hmm.lm import estimate_kn, make_g_fst
from asrkt.hmm.priors import log_priors, read_counts
from asrkt.targets import build_objective
from asrkt.utils.errors import AsrktError
from asrkt.utils.tables import read_table


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    from asrkt.bin.make_graph import main as make_graph
    from asrkt.bin.train_mono import main as train_mono

    root = tmp_path_factory.mktemp("hybrid")
    lang, train, _ = make_corpus(root, n_utts=24, seed=0, name="train")
    _, dev, _ = make_corpus(root, n_utts=6, seed=5, name="dev")
    exp = root / "exp"
    train_mono(["--num-iters", "8", "--tot-gauss", "60", "--max-iter-inc", "6", "--realign-iters", "1 2 3 4 6",
                "--feat-kind", "raw", "--cmvn", "false", "--delta-order", "0", "--align-data", str(dev),
                str(train), str(lang), str(exp)])
    vocab = set(read_symbols(lang / "words.txt")) - {"<eps>", "#0", "<s>", "</s>"}
    lm = estimate_kn([t.split() for t in read_table(train / "text").values()], order=2, vocab=vocab, unk="<UNK>")
    lm.write(root / "lm.arpa")
    make_g_fst(root / "lm.arpa", lang / "words.txt", lang / "G.fst")
    make_graph([str(lang), str(exp)])
    return root, lang, dev, exp


def gmm_log_posteriors(model, feats, log_prior) -> np.ndarray:
    """log p(s|x) from the GMM's log p(x|s) and the priors: what a perfect DNN would output (pdfs never seen in
    the alignments, e.g. the unused spoken-noise phone's, get no probability, as a DNN trained on them would)."""
    joint = np.where(log_prior < 0, gmm_loglikes(model.am, feats) + log_prior, -1e4)
    return (joint - np.logaddexp.reduce(joint, axis=1, keepdims=True)).astype(np.float32)


def test_make_graph_writes_the_graph_and_hybrid_yaml(system):
    root, _, _, exp = system
    assert (exp / "graph" / "HCLG.fst").is_file() and (exp / "targets" / HYBRID_INFO).is_file()
    model_dir, graph_dir = read_hybrid_info(exp / "targets")
    assert model_dir.resolve() == exp.resolve() and graph_dir.resolve() == (exp / "graph").resolve()
    assert "gmm_model: .." in (exp / "targets" / HYBRID_INFO).read_text()  # relative: the folders can move


def test_hybrid_decoder_equals_the_gmm_decodable(system):
    root, _, dev, exp = system
    model = MonoModel.load(exp)
    log_prior = log_priors(read_counts(exp / "targets" / "ali_train_pdf.counts"))
    assert (log_prior < 0).sum() >= 3 * 5  # unseen pdfs have the large UNSEEN_LOG_PRIOR
    feats = GmmFeatures(dev, model.feature_opts)
    utts = sorted(read_table(dev / "text"))
    xs = [feats(u) for u in utts]
    # a padded batch, as decode_batches gives it
    T = max(len(x) for x in xs)
    batch = np.full((len(xs), T, model.num_pdfs), -30.0, dtype=np.float32)
    for b, x in enumerate(xs):
        batch[b, :len(x)] = gmm_log_posteriors(model, x, log_prior)
    lengths = torch.tensor([len(x) for x in xs])
    objective = build_objective("frame_ce", exp / "targets")
    decoder = objective.build_decoder(DecodeConfig(method="hclg", acoustic_scale=0.1))
    assert isinstance(decoder, HybridDecoder)
    hyps = decoder.decode(torch.from_numpy(batch), lengths)
    gmm = HclgDecoder(exp / "graph" / "HCLG.fst", model.trans_model)
    id2word = {i: w for w, i in read_symbols(exp / "graph" / "words.txt").items()}
    ref = read_table(dev / "text")
    for u, x, hyp in zip(utts, xs, hyps):
        words, _, _ = gmm.decode_gmm(model.am, x, u, acoustic_scale=0.1)
        assert hyp == words_of(words, id2word)
    # the synthetic phones are far apart: the right words (tolerance: one utterance wrong, measured 0)
    assert sum(h != ref[u] for u, h in zip(utts, hyps)) <= 1
    assert decoder.failed == 0
    # the default method ("greedy", CTC's name) selects the hybrid decoder too; unknown ones are refused
    assert isinstance(objective.build_decoder(DecodeConfig()), HybridDecoder)
    with pytest.raises(AsrktError, match="unknown decoding method 'beam' for the frame_ce"):
        objective.build_decoder(DecodeConfig(method="beam"))


def test_hybrid_decoder_errors(system, tmp_path):
    import shutil

    root, _, _, exp = system
    targets = tmp_path / "targets"
    shutil.copytree(exp / "targets", targets)
    (targets / HYBRID_INFO).unlink()  # and no ../graph beside it
    with pytest.raises(AsrktError, match=r"HCLG\.fst.*missing: the decoding graph .*make_graph"):
        HybridDecoder(targets)
    (targets / HYBRID_INFO).write_text(f"gmm_model: {exp}\ngraph: {exp / 'graph'}\n")  # absolute paths work too
    assert HybridDecoder(targets).graph_dir == exp / "graph"
    with pytest.raises(AsrktError, match="the model 7: the targets dir, the graph and the model"):
        HybridDecoder(targets, num_pdfs=7)
    (targets / "ali_train_pdf.counts").unlink()
    with pytest.raises(AsrktError, match="ali_train_pdf.counts.*pdf counts of the training alignment"):
        HybridDecoder(targets)


def test_no_lm_graph_and_dev_tuning_at_several_scales(system, tmp_path):
    """make_graph --graph-name graph_nolm leaves hybrid.yaml alone; decode --graph reaches that graph; decoding
    at several scales (the model run once) gives, scale by scale, what a decode at that one scale gives, and
    pick_scale takes the lowest dev WER."""
    import shutil

    import yaml

    from asrkt.bin.decode import main as decode
    from asrkt.bin.make_graph import main as make_graph
    from asrkt.bin.pick_scale import main as pick_scale
    from asrkt.features.cmvn import compute_cmvn_stats
    from asrkt.features.fbank import FbankConfig
    from asrkt.features.info import make_feats_info, write_feats_info
    from asrkt.io import read_matrices, write_matrices
    from asrkt.hmm.lm import uniform_word_loop
    from asrkt.models import DnnConfig, ModelConfig, build_model, save_checkpoint

    root, lang, dev, exp = system
    nolm = tmp_path / "lang_nolm"
    shutil.copytree(lang, nolm)
    words = {w for t in read_table(dev / "text").values() for w in t.split()}
    make_g_fst(uniform_word_loop(words).write(tmp_path / "loop.arpa"), nolm / "words.txt", nolm / "G.fst")
    info = (exp / "targets" / HYBRID_INFO).read_text()
    make_graph(["--graph-name", "graph_nolm", str(nolm), str(exp)])
    assert (exp / "graph_nolm" / "HCLG.fst").is_file() and (exp / "targets" / HYBRID_INFO).read_text() == info
    assert HybridDecoder(exp / "targets", graph_dir=exp / "graph_nolm").graph_dir == exp / "graph_nolm"
    with pytest.raises(AsrktError, match="graph_x/HCLG.fst: missing: no decoding graph there.*graph-name graph_x"):
        HybridDecoder(exp / "targets", graph_dir=exp / "graph_x")

    # a DNN whose outputs are the GMM's own log-posteriors would need training; an untrained one is enough here:
    # the claim is that the scale loop equals separate decodes, whatever the model says
    data = tmp_path / "dev"
    shutil.copytree(dev, data)
    feats = dict(read_matrices(f"scp:{data / 'feats.scp'}"))
    spk = {u: u.split("-")[0] for u in feats}
    write_matrices(f"ark,scp:{data / 'cmvn.ark'},{data / 'cmvn.scp'}",
                   {s: compute_cmvn_stats(f for u, f in feats.items() if spk[u] == s) for s in sorted(set(spk.values()))})
    dim = next(iter(feats.values())).shape[1]
    write_feats_info(data, make_feats_info(FbankConfig(num_mel_bins=dim), len(feats),
                                           sum(len(f) for f in feats.values())))
    torch.manual_seed(0)
    model = build_model(ModelConfig(type="dnn", subsampling=1, dnn=DnnConfig(hidden_layers=1, hidden_units=16,
                                                                             context=1)),
                        dim, MonoModel.load(exp).num_pdfs)
    save_checkpoint(tmp_path / "dnn.pt", model, extra={"objective": "frame_ce"})
    common = ["--model", str(tmp_path / "dnn.pt"), "--data-dir", str(data), "--lang-dir", str(exp / "targets"),
              "--method", "hclg", "--graph", str(exp / "graph_nolm")]
    tune = tmp_path / "tune_dev"
    scores = decode(common + ["--out-dir", str(tune), "--acoustic-scales", "0.05 0.5"])
    assert sorted(scores) == [0.05, 0.5]
    for s in (0.05, 0.5):
        single = decode(common + ["--out-dir", str(tmp_path / f"single_{s}"), "--acoustic-scale", str(s)])
        assert read_table(tune / f"acwt_{s:g}" / "hyp.txt") == read_table(tmp_path / f"single_{s}" / "hyp.txt")
        assert scores[s]["wer"] == single["wer"] and scores[s]["decoder"]["graph"] == str(exp / "graph_nolm")
    best = pick_scale([str(tune)])
    assert best["wer"] == min(s["wer"] for s in scores.values())
    assert yaml.safe_load((tune / "best.yaml").read_text())["acoustic_scale"] == best["acoustic_scale"]
