"""Decoding on HCLG with kaldi-hmm-gmm's LatticeFasterDecoder (best path): the GMM's own decodable, and a (frames x
pdfs) matrix of scaled log-likelihoods for the hybrid DNN.

* GMM: ``DecodableAmDiagGmmScaled(am, trans_model, feats, acoustic_scale)`` (Kaldi's ``gmm-latgen-faster``).
* DNN: the wheel has no decodable for a matrix indexed by pdf. :func:`expand_to_tids` turns (frames x pdfs)
  into (frames x transition ids), column ``tid - 1`` holding ``pdf(tid)`` (``DecodableCtc`` looks a transition
  id up at column ``tid - 1``), scaled by the acoustic scale; that is passed to ``DecodableCtc``. A test checks
  that decoding the GMM's own log-likelihoods this way gives the same words and alignment as the GMM
  decodable. For a DNN the matrix is ``log p(s|x) - log p(s)`` (:mod:`asrkt.hmm.priors`).
* The acoustic scale is the inverse LM weight (Kaldi scores lattices at LM weights 7..17 with acwt 1; here,
  best path only, the scale is chosen on dev by decoding at several scales: :func:`decode_data_dir` and
  :func:`asrkt.decode.run.decode_data_dir` take a list, :func:`asrkt.score.decode_dir.pick_best_scale` picks).

The DNN's decoder behind the frame_ce objective (:class:`HybridDecoder`) finds what it needs from the targets dir
alone: ``ali_train_pdf.counts`` (the priors) is there, and ``hybrid.yaml`` (:func:`write_hybrid_info`, written by
``python -m asrkt.bin.make_graph``) names the GMM system whose transition model the graph was built with and the
graph dir, relative to the targets dir. Without ``hybrid.yaml`` the train_mono layout is assumed: the targets dir
is ``<gmm exp>/targets`` and the graph ``<gmm exp>/graph``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asrkt.utils.errors import AsrktError, fail

logger = logging.getLogger(__name__)


@dataclass
class DecodeOptions:
    acoustic_scale: float = 0.1  # GMM: Kaldi's decode.sh default acwt 0.083333; tuned on dev
    beam: float = 13.0
    max_active: int = 7000
    lattice_beam: float = 6.0
    allow_partial: bool = True  # Kaldi's default: output the best partial path when no final state is reached


class HclgDecoder:
    """A LatticeFasterDecoder on one HCLG, reused for every utterance."""

    def __init__(self, hclg, trans_model, opts: DecodeOptions = DecodeOptions()):
        from asrkt.hmm.kaldi import khg

        if isinstance(hclg, (str, Path)):
            from asrkt.hmm.graph import read_fst

            hclg = read_fst(hclg)
        self.hclg, self.tm, self.opts = hclg, trans_model, opts
        cfg = khg.LatticeFasterDecoderConfig(max_active=opts.max_active, beam=opts.beam,
                                             lattice_beam=opts.lattice_beam)
        self.decoder = khg.LatticeFasterDecoder(hclg, cfg)
        self._t2p = None

    def _run(self, decodable, utt: str):
        from asrkt.hmm.kaldi import khg

        ok, ali, words, like = khg.decode_utterance_lattice_faster(decoder=self.decoder, decodable=decodable,
                                                                   trans_model=self.tm, utt=utt,
                                                                   allow_partial=self.opts.allow_partial)
        return (list(words), list(ali), float(like)) if ok else (None, None, 0.0)

    def decode_gmm(self, am, feats: np.ndarray, utt: str = "utt", acoustic_scale: float | None = None):
        """(word ids or None, transition ids, log-likelihood) of the GMM ``am`` on ``feats``."""
        from asrkt.hmm.kaldi import khg

        scale = self.opts.acoustic_scale if acoustic_scale is None else acoustic_scale
        dec = khg.DecodableAmDiagGmmScaled(am, self.tm, np.ascontiguousarray(feats, dtype=np.float32), scale)
        return self._run(dec, utt)

    def decode_loglikes(self, loglikes: np.ndarray, utt: str = "utt", acoustic_scale: float | None = None):
        """Decode a (frames x pdfs) matrix of (unscaled) log-likelihoods; see the module docstring."""
        from asrkt.hmm.kaldi import khg

        scale = self.opts.acoustic_scale if acoustic_scale is None else acoustic_scale
        m = expand_to_tids(loglikes, self.tm, scale)
        return self._run(khg.DecodableCtc(m), utt)


def expand_to_tids(loglikes: np.ndarray, trans_model, scale: float = 1.0) -> np.ndarray:
    """(frames x pdfs) -> (frames x transition ids): column ``tid - 1`` is ``scale * loglikes[:, pdf(tid)]``."""
    loglikes = np.asarray(loglikes, dtype=np.float32)
    t2p = np.asarray(trans_model.transition_id_to_pdf_array(), dtype=np.int64)[1:]  # index tid - 1
    if loglikes.ndim != 2 or loglikes.shape[1] != trans_model.num_pdfs:
        raise AsrktError(f"expected a (frames x {trans_model.num_pdfs}) matrix of pdf log-likelihoods, got "
                         f"shape {loglikes.shape}")
    return np.ascontiguousarray(loglikes[:, t2p] * np.float32(scale))


def gmm_loglikes(am, feats: np.ndarray) -> np.ndarray:
    """(frames x pdfs) log-likelihoods of a GMM (``gmm-compute-likes``); slow, for tests and checks."""
    feats = np.asarray(feats, dtype=np.float32)
    return np.array([[am.log_likelihood(p, x) for p in range(am.num_pdfs)] for x in feats], dtype=np.float32)


def words_of(word_ids, id2word: dict) -> str:
    return " ".join(id2word[i] for i in word_ids)


def decode_data_dir(graph_dir, model_dir, data_dir, out_dir, opts: DecodeOptions = DecodeOptions(),
                    acoustic_scales=None) -> dict:
    """GMM-decode ``data_dir`` with ``graph_dir/HCLG.fst`` into ``out_dir`` (one scored folder per acoustic
    scale, ``out_dir/acwt_<s>/``, when several are given; else ``out_dir``). Returns {scale: score dict}."""
    from asrkt.hmm.gmm import GmmFeatures, MonoModel
    from asrkt.hmm.lang import read_symbols
    from asrkt.score.decode_dir import scale_dir, write_scored

    t0 = time.time()
    model = MonoModel.load(model_dir)
    graph_dir = Path(graph_dir)
    id2word = {i: w for w, i in read_symbols(graph_dir / "words.txt").items()}
    dec = HclgDecoder(graph_dir / "HCLG.fst", model.trans_model, opts)
    scales = list(acoustic_scales or [opts.acoustic_scale])
    feats = dict(GmmFeatures(data_dir, model.feature_opts).items())
    if not feats:
        raise fail("no features", Path(data_dir) / "feats.scp")
    scores = {}
    for s in scales:
        ts = time.time()
        hyps, failed, frames = {}, [], 0
        for utt in sorted(feats):
            words, _, _ = dec.decode_gmm(model.am, feats[utt], utt, acoustic_scale=s)
            if words is None:
                failed.append(utt)
                words = []
            hyps[utt] = words_of(words, id2word)
            frames += len(feats[utt])
        d = scale_dir(out_dir, s) if len(scales) > 1 else Path(out_dir)
        secs = time.time() - ts
        score = {"system": "gmm", "graph": str(graph_dir.resolve()), "model": str(Path(model_dir).resolve()),
                 "acoustic_scale": s, "beam": opts.beam, "failed": len(failed), "seconds": round(secs, 1),
                 "real_time_factor": round(secs / max(frames * 0.01, 1e-9), 4)}
        if failed:
            logger.warning("%d utterances reached no final state and got no words (e.g. %s)", len(failed), failed[0])
        scores[s] = write_scored(d, data_dir, hyps, score)
    logger.info("decoded %d utterances at %d acoustic scale(s) in %.1fs", len(feats), len(scales), time.time() - t0)
    return scores


# ------------------------------------------------------------------------ the DNN decoder of frame_ce
HYBRID_INFO = "hybrid.yaml"
COUNTS_FILE = "ali_train_pdf.counts"


def write_hybrid_info(targets_dir, model_dir, graph_dir) -> Path:
    """``targets_dir/hybrid.yaml``: where the GMM system (transition model) and the HCLG graph dir are, as paths
    relative to the targets dir (the three folders can move together)."""
    import os

    import yaml

    from asrkt.utils.atomic import atomic_write_text

    targets_dir = Path(targets_dir)
    rel = {k: os.path.relpath(Path(v).resolve(), targets_dir.resolve())
           for k, v in (("gmm_model", model_dir), ("graph", graph_dir))}
    path = targets_dir / HYBRID_INFO
    atomic_write_text(path, "# written by asrkt.hmm.decode.write_hybrid_info: paths relative to this folder\n"
                      + yaml.safe_dump(rel, sort_keys=False))
    return path


def read_hybrid_info(targets_dir) -> tuple[Path, Path]:
    """(GMM model dir, graph dir) of a frame_ce targets dir; see the module docstring."""
    from asrkt.utils.config import load_yaml

    targets_dir = Path(targets_dir)
    path = targets_dir / HYBRID_INFO
    if path.is_file():
        info = load_yaml(path)
        try:
            model_dir, graph_dir = (targets_dir / info[k] for k in ("gmm_model", "graph"))
        except (KeyError, TypeError):
            raise fail("expected the keys gmm_model and graph", path) from None
    else:
        model_dir, graph_dir = targets_dir.parent, targets_dir.parent / "graph"
    if not (graph_dir / "HCLG.fst").is_file():
        raise fail(f"missing: the decoding graph (make it with python -m asrkt.bin.make_graph <lang-dir> "
                   f"{model_dir}, which also writes {path})", graph_dir / "HCLG.fst")
    return model_dir, graph_dir


class HybridDecoder:
    """A DNN's log-posteriors (B, T, pdfs) -> text, through HCLG: ``(log p(s|x) - log p(s)) * acoustic_scale``
    (priors from the training alignment's pdf counts), best path of LatticeFasterDecoder. The decoder of the
    frame_ce objective (``method: hclg``); ``targets_dir`` is the one the model was trained with.

    The model must output one frame per feature frame (``model.subsampling: 1``, as Kaldi nnet1): the HMMs have
    a minimum duration of 3 frames per phone, which a subsampled output could not fill."""

    def __init__(self, targets_dir, opts: DecodeOptions = DecodeOptions(), num_pdfs: int | None = None,
                 graph_dir=None):
        from asrkt.hmm.gmm import MonoModel
        from asrkt.hmm.lang import read_symbols
        from asrkt.hmm.priors import log_priors, read_counts

        targets_dir = Path(targets_dir)
        model_dir, default_graph = read_hybrid_info(targets_dir)
        graph_dir = Path(graph_dir) if graph_dir else default_graph  # e.g. graph_nolm, made from the same GMM
        if not (graph_dir / "HCLG.fst").is_file():
            raise fail(f"missing: no decoding graph there (make it with python -m asrkt.bin.make_graph --graph-name "
                       f"{graph_dir.name} <lang-dir> {model_dir})", graph_dir / "HCLG.fst")
        counts_path = targets_dir / COUNTS_FILE
        if not counts_path.is_file():
            raise fail("missing: the pdf counts of the training alignment (written by train_mono), needed for "
                       "the priors", counts_path)
        self.log_prior = log_priors(read_counts(counts_path)).astype(np.float32)
        tm = MonoModel.load(model_dir).trans_model
        n = int(tm.num_pdfs)
        if len(self.log_prior) != n or (num_pdfs is not None and num_pdfs != n):
            raise fail(f"the GMM system {model_dir} has {n} pdfs, the counts {len(self.log_prior)}"
                       + (f", the model {num_pdfs}" if num_pdfs is not None else "")
                       + ": the targets dir, the graph and the model must come from one GMM system", counts_path)
        self.id2word = {i: w for w, i in read_symbols(graph_dir / "words.txt").items()}
        self.decoder = HclgDecoder(graph_dir / "HCLG.fst", tm, opts)
        self.graph_dir, self.model_dir = graph_dir, model_dir
        self.failed = 0
        logger.info("hybrid decoder: graph %s, transition model of %s, priors from %s, acoustic scale %g, beam %g",
                    graph_dir, model_dir, counts_path, opts.acoustic_scale, opts.beam)

    def loglikes(self, log_probs: np.ndarray) -> np.ndarray:
        """Scaled likelihoods before the acoustic scale: ``log p(s|x) - log p(s)``, (T, pdfs)."""
        return np.asarray(log_probs, dtype=np.float32) - self.log_prior

    def decode(self, log_probs, lengths) -> list[str]:
        lp = log_probs.detach().float().cpu().numpy() if hasattr(log_probs, "detach") else np.asarray(log_probs)
        out = []
        for b in range(lp.shape[0]):
            n = int(lengths[b])
            words, _, _ = self.decoder.decode_loglikes(self.loglikes(lp[b, :n]), utt=f"batch-item-{b}")
            if words is None:
                self.failed += 1
                logger.warning("an utterance of %d frames reached no final state and got no words", n)
                words = []
            out.append(words_of(words, self.id2word))
        return out
