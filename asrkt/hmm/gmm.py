"""Monophone GMM-HMM training as Kaldi's ``steps/train_mono.sh``, with Kaldi's C++ through kaldi-hmm-gmm.

What :func:`train_mono` does (Kaldi's defaults in brackets):

1. **Init** (``gmm-init-mono``): one pdf per HMM state of each phone (``monophone_context_dependency``), each a
   single diagonal Gaussian with the global mean and variance of the training features.
2. **Training graphs** (``compile-train-graphs``): ``TrainingGraphCompiler`` on the lang dir's L.fst, one
   graph per utterance from its transcript (words outside words.txt map to the OOV word).
3. **Flat start** (``align-equal-compiled``): ``kaldifst.equal_align`` spreads the frames evenly over a path
   of the graph; an utterance with fewer frames than its graph's shortest path cannot align and is reported.
4. **Iterations** [40]: accumulate (``gmm-acc-stats-ali``: ``AccumAmDiagGmm.accumulate_for_gmm`` per frame,
   transition counts), re-estimate (``gmm-est``: ``TransitionModel.mle_update``, ``mle_am_diag_gmm_update``,
   min Gaussian occupancy 3 on the first update), then mix up (``AmDiagGmm.split_by_count``, power [0.25]):
   the number of Gaussians grows linearly from one per pdf to ``tot_gauss`` [1000] over ``max_iter_inc``
   [30] iterations. On the re-alignment iterations [1..10 12 14 16 18 20 23 26 29 32 35 38] the data are
   aligned again (``gmm-align-compiled``: ``add_transition_probs`` with transition scale 1.0 and self-loop
   scale 0.1, ``DecodableAmDiagGmmScaled`` with acoustic scale 0.1, ``align_utterance_wrapper``) with beam
   6 on the first re-alignment and 10 afterwards, retry beam 4 x beam, as train_mono.sh.
5. **Final alignments** (``steps/align_si.sh``): the training set and any other data dirs (dev), beam 10,
   retry beam 40.

Utterances that fail to align (neither beam finds the end of the graph) keep no alignment, as in Kaldi, and are
counted and reported by name; the retried ones are counted too (:class:`AlignStats`).

**Features**: the data dirs hold log-mel filterbanks (``feats.scp``) with per-speaker CMVN stats (``cmvn.scp``).
GMMs with diagonal covariances want decorrelated features, so :class:`GmmFeatures` (kind ``cepstra``, the
default) turns them into Kaldi's MFCCs: per-speaker mean normalisation of the log-mel energies (applied before
the DCT: CMN commutes with it), the DCT-II of Kaldi's ``ComputeDctMatrix`` to ``num_ceps`` [13] coefficients,
cepstral liftering [22] (Kaldi's MFCC with ``use_energy=false`` is exactly this), then ``add-deltas`` [order
2, window 2]: 39 dimensions. This keeps one feature extraction (and one frame count) for the GMM and the DNN,
and needs no audio. Kind ``raw`` uses the stored features as they are (synthetic tests).

**Model files** in the exp dir: ``final.mdl.pkl`` (a pickle of the wheel's objects: ``TransitionModel``,
``AmDiagGmm``, ``ContextDependency``, which pickle through their own ``__getstate__``; plus the topology text,
the feature options and the phone/word tables' hashes), ``tree`` (the ``ContextDependency`` in Kaldi's
binary format, ``ContextDependency.write``), ``num_pdfs``, ``train_info.yaml`` (per-iteration log-likelihood,
Gaussians, alignment failures, times). The wheel exposes no Kaldi writer for TransitionModel/AmDiagGmm, so
no Kaldi ``final.mdl``.
"""
from __future__ import annotations

import logging
import math
import pickle
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from asrkt.utils.errors import AsrktError, fail

logger = logging.getLogger(__name__)

REALIGN_ITERS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 18, 20, 23, 26, 29, 32, 35, 38)
MODEL_FILE = "final.mdl.pkl"


# ------------------------------------------------------------------------------------------------ features
@dataclass
class FeatureOptions:
    kind: str = "cepstra"  # "cepstra": MFCC from the stored log-mel fbank (see the module docstring); "raw"
    cmvn: bool = True  # per-speaker mean normalisation from cmvn.scp (Kaldi's apply-cmvn, no variances)
    num_ceps: int = 13
    cepstral_lifter: float = 22.0
    delta_order: int = 2  # add-deltas
    delta_window: int = 2


def dct_matrix(num_ceps: int, num_bins: int) -> np.ndarray:
    """Kaldi's ``ComputeDctMatrix``: (num_ceps, num_bins), orthonormal DCT-II rows."""
    if num_ceps > num_bins:
        raise AsrktError(f"num_ceps {num_ceps} > feature dimension {num_bins}")
    n = np.arange(num_bins) + 0.5
    m = np.sqrt(2.0 / num_bins) * np.cos(np.pi / num_bins * np.outer(np.arange(num_ceps), n))
    m[0] = math.sqrt(1.0 / num_bins)
    return m


def lifter_coeffs(num_ceps: int, q: float) -> np.ndarray:
    """Kaldi's ``ComputeLifterCoeffs``: 1 + 0.5 Q sin(pi i / Q)."""
    if q == 0:
        return np.ones(num_ceps)
    return 1.0 + 0.5 * q * np.sin(np.pi * np.arange(num_ceps) / q)


def delta_scales(order: int, window: int) -> list[np.ndarray]:
    """Kaldi's ``DeltaFeatures`` filters: scales[i] is the i-th order filter, centred."""
    scales = [np.array([1.0])]
    norm = 2.0 * sum(j * j for j in range(1, window + 1))
    for _ in range(order):
        prev = scales[-1]
        prev_off = (len(prev) - 1) // 2
        cur_off = prev_off + window
        cur = np.zeros(2 * cur_off + 1)
        for j in range(-prev_off, prev_off + 1):
            for k in range(-window, window + 1):
                cur[j + k + cur_off] += k * prev[j + prev_off]
        scales.append(cur / norm)
    return scales


def add_deltas(feats: np.ndarray, order: int = 2, window: int = 2) -> np.ndarray:
    """Kaldi's ``add-deltas``: [x, d, dd], frame indices clamped at the edges."""
    T, D = feats.shape
    out = np.zeros((T, D * (order + 1)), dtype=np.float32)
    for i, s in enumerate(delta_scales(order, window)):
        off = (len(s) - 1) // 2
        acc = np.zeros((T, D))
        for j, w in enumerate(s):
            if w != 0.0:
                idx = np.clip(np.arange(T) + j - off, 0, T - 1)
                acc += w * feats[idx]
        out[:, i * D:(i + 1) * D] = acc
    return out


class GmmFeatures:
    """The GMM's features of a data dir: ``feats(utt)`` or ``items()``; see :class:`FeatureOptions`."""

    def __init__(self, data_dir, opts: FeatureOptions = FeatureOptions()):
        from asrkt.io import load_scp

        self.data_dir, self.opts = Path(data_dir), opts
        if opts.kind not in ("cepstra", "raw"):
            raise AsrktError(f"feature kind must be 'cepstra' or 'raw', got '{opts.kind}'")
        scp = self.data_dir / "feats.scp"
        if not scp.is_file():
            raise fail("missing: compute features first", scp)
        self.scp = load_scp(scp)
        self.cmvn = None
        if opts.cmvn:
            from asrkt.features.cmvn import CmvnApplier

            self.cmvn = CmvnApplier(self.data_dir, norm_vars=False)
        self._dct = None

    def transform(self, utt: str, feats: np.ndarray) -> np.ndarray:
        feats = np.asarray(feats, dtype=np.float32)
        if self.cmvn is not None:
            feats = self.cmvn(utt, feats)
        if self.opts.kind == "cepstra":
            if self._dct is None or self._dct.shape[1] != feats.shape[1]:
                self._dct = (dct_matrix(self.opts.num_ceps, feats.shape[1])
                             * lifter_coeffs(self.opts.num_ceps, self.opts.cepstral_lifter)[:, None])
            feats = (feats.astype(np.float64) @ self._dct.T).astype(np.float32)
        if self.opts.delta_order > 0:
            feats = add_deltas(feats, self.opts.delta_order, self.opts.delta_window)
        return np.ascontiguousarray(feats, dtype=np.float32)

    def __call__(self, utt: str) -> np.ndarray:
        if utt not in self.scp:
            raise fail("utterance has no features", self.data_dir / "feats.scp", utt)
        return self.transform(utt, self.scp[utt])

    def items(self, utts=None):
        from asrkt.io import read_matrices

        wanted = None if utts is None else set(utts)
        for utt, m in read_matrices(f"scp:{self.data_dir / 'feats.scp'}"):
            if wanted is None or utt in wanted:
                yield utt, self.transform(utt, m)


# ------------------------------------------------------------------------------------------------- model
@dataclass
class MonoModel:
    """The wheel's objects of a trained (or initialised) system plus what is needed to use it again."""

    trans_model: object  # khg.TransitionModel
    am: object  # khg.AmDiagGmm
    tree: object  # khg.ContextDependency
    topo_text: str
    feature_opts: FeatureOptions = field(default_factory=FeatureOptions)
    info: dict = field(default_factory=dict)

    @property
    def num_pdfs(self) -> int:
        return int(self.trans_model.num_pdfs)

    def save(self, exp_dir) -> Path:
        exp_dir = Path(exp_dir)
        exp_dir.mkdir(parents=True, exist_ok=True)
        state = {"format": "asrkt-mono-1", "trans_model": self.trans_model, "am": self.am, "tree": self.tree,
                 "topo_text": self.topo_text, "feature_opts": asdict(self.feature_opts), "info": self.info}
        tmp = exp_dir / (MODEL_FILE + ".tmp")
        with open(tmp, "wb") as f:
            pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.rename(exp_dir / MODEL_FILE)
        self.tree.write(True, str(exp_dir / "tree"))  # Kaldi's binary tree
        (exp_dir / "num_pdfs").write_text(f"{self.num_pdfs}\n")
        return exp_dir / MODEL_FILE

    @classmethod
    def load(cls, path) -> "MonoModel":
        import asrkt.hmm.kaldi  # noqa: F401  (the wheels, in their import order, before unpickling)

        path = Path(path)
        if path.is_dir():
            path = path / MODEL_FILE
        if not path.is_file():
            raise fail("missing: the GMM model (train it with python -m asrkt.bin.train_mono)", path)
        with open(path, "rb") as f:
            state = pickle.load(f)
        if not isinstance(state, dict) or state.get("format") != "asrkt-mono-1":
            raise fail("not a model written by asrkt.hmm.gmm", path)
        return cls(state["trans_model"], state["am"], state["tree"], state["topo_text"],
                   FeatureOptions(**state["feature_opts"]), state["info"])


def init_mono(topo_text: str, feats_iter, feature_opts: FeatureOptions = FeatureOptions()) -> MonoModel:
    """``gmm-init-mono``: every pdf a single Gaussian with the global mean and variance of ``feats_iter``."""
    from asrkt.hmm.kaldi import khg
    from asrkt.hmm.lang import read_topology

    topo = read_topology(topo_text)
    n, s1, s2 = 0, None, None
    for m in feats_iter:
        m = np.asarray(m, dtype=np.float64)
        if s1 is None:
            s1, s2 = np.zeros(m.shape[1]), np.zeros(m.shape[1])
        s1 += m.sum(0)
        s2 += (m * m).sum(0)
        n += len(m)
    if not n:
        raise AsrktError("no feature frames to initialise the GMM from")
    mean = s1 / n
    var = np.maximum(s2 / n - mean * mean, 1e-3)
    tree = khg.monophone_context_dependency(list(topo.phones), topo.get_phone_to_num_pdf_classes())
    gmm = khg.DiagGmm(nmix=1, dim=len(mean))
    gmm.set_weights(np.ones(1, dtype=np.float32))
    gmm.set_means(mean[None].astype(np.float32))
    gmm.set_invvars((1.0 / var)[None].astype(np.float32))
    gmm.compute_gconsts()
    am = khg.AmDiagGmm()
    for _ in range(tree.num_pdfs):
        am.add_pdf(gmm)  # copied on the C++ side
    tm = khg.TransitionModel(tree, topo)
    return MonoModel(tm, am, tree, topo_text, feature_opts)


# --------------------------------------------------------------------------------------------- alignment
@dataclass
class AlignStats:
    done: int = 0
    retried: int = 0
    failed: list = field(default_factory=list)  # utterance ids
    frames: int = 0
    tot_like: float = 0.0

    def summary(self, what: str = "") -> str:
        s = (f"{what}aligned {self.done} utterances ({self.retried} with the retry beam), "
             f"{len(self.failed)} failed")
        if self.failed:
            s += f" ({', '.join(self.failed[:10])}{' ...' if len(self.failed) > 10 else ''})"
        if self.frames:
            s += f"; log-likelihood per frame {self.tot_like / self.frames:.3f} (gmm-align-compiled's figure)"
        return s


def _word_ids(words, lang, utt) -> list[int]:
    from asrkt.hmm.lang import map_words

    mapped = map_words(words, lang.word2id, lang.oov_word, where=f"utterance {utt}")
    return [lang.word2id[w] for w in mapped]


class GraphCompiler:
    """Training graphs of transcripts (``compile-train-graphs``) from a lang dir's L.fst."""

    def __init__(self, model: MonoModel, lang_dir):
        from asrkt.hmm.kaldi import kaldifst, khg
        from asrkt.hmm.lang import load_lang

        self.lang = load_lang(lang_dir)
        lex = kaldifst.StdVectorFst.read(str(Path(lang_dir) / "L.fst"))
        if lex is None:
            raise fail("cannot read L.fst", Path(lang_dir) / "L.fst")
        self.gc = khg.TrainingGraphCompiler(model.trans_model, model.tree, lex, self.lang.disambig_ids,
                                            khg.TrainingGraphCompilerOptions())

    def compile(self, utt: str, words) -> object:
        return self.gc.compile_graph_from_text(_word_ids(words, self.lang, utt))


def equal_align(graph, num_frames: int, seed: int = 3, num_paths: int = 1):
    """``align-equal-compiled``: transition ids of a random path of ``num_frames`` frames, or None.

    ``num_paths`` > 1 draws that many random paths (seeds ``seed``, ``seed + 1``, ...) and keeps the one with the
    lowest graph cost. Why: Kaldi draws one; with the silence HMM's fully connected middle states a random path
    often spends half the utterance in silence, and on small corpora the flat start then converges to a model
    whose silence absorbs speech (measured on the synthetic test corpus: 35 % frame accuracy with one path).
    The cheapest of several paths skips most optional silences, as the transcripts' likelier readings do."""
    from asrkt.hmm.kaldi import kaldifst

    best, best_cost = None, math.inf
    for k in range(max(1, num_paths)):
        ok, path = kaldifst.equal_align(graph, num_frames, seed + k, 10)
        if not ok:
            continue
        ok, ali, _, weight = kaldifst.get_linear_symbol_sequence(path)
        if ok and len(ali) == num_frames and weight.value < best_cost:
            best, best_cost = list(ali), weight.value
    return best


@dataclass
class AlignOptions:
    beam: float = 10.0
    retry_beam: float = 40.0
    acoustic_scale: float = 0.1
    transition_scale: float = 1.0
    self_loop_scale: float = 0.1
    careful: bool = False


def align_one(model: MonoModel, graph, feats: np.ndarray, opts: AlignOptions, utt: str = "utt"):
    """``gmm-align-compiled`` for one utterance: (transition ids or None, retried, log-likelihood).

    ``graph`` is not modified (a copy gets the transition probabilities)."""
    from asrkt.hmm.kaldi import khg

    fst = graph.copy()
    khg.add_transition_probs(trans_model=model.trans_model, transition_scale=opts.transition_scale,
                             self_loop_scale=opts.self_loop_scale, fst=fst)
    dec = khg.DecodableAmDiagGmmScaled(model.am, model.trans_model, feats, opts.acoustic_scale)
    cfg = khg.AlignConfig(beam=opts.beam, retry_beam=opts.retry_beam, careful=opts.careful)
    done, err, retried, like, frames, ali, _ = khg.align_utterance_wrapper(cfg, utt, opts.acoustic_scale, fst, dec,
                                                                           0, 0, 0, 0.0, 0)
    if err or not done or len(ali) != len(feats):
        return None, bool(retried), 0.0
    return list(ali), bool(retried), float(like)


def align_set(model: MonoModel, utts, graphs: dict, feats: dict, opts: AlignOptions, what: str = ""):
    """Align every utterance that has a graph: ({utt: transition ids}, AlignStats)."""
    out, stats = {}, AlignStats()
    for utt in utts:
        if utt not in graphs:
            stats.failed.append(utt)
            continue
        ali, retried, like = align_one(model, graphs[utt], feats[utt], opts, utt)
        if ali is None:
            stats.failed.append(utt)
            continue
        out[utt] = ali
        stats.done += 1
        stats.retried += int(retried)
        stats.frames += len(ali)
        stats.tot_like += like
    (logger.warning if stats.failed else logger.info)("%s", stats.summary(what))
    return out, stats


# ------------------------------------------------------------------------------------------ EM iteration
def accumulate(model: MonoModel, alis: dict, feats: dict):
    """``gmm-acc-stats-ali``: (AccumAmDiagGmm, transition counts, total log-likelihood, frames)."""
    from asrkt.hmm.kaldi import khg

    accs = khg.AccumAmDiagGmm()
    accs.init(model.am, khg.GmmUpdateFlags.kGmmAll)
    tm = model.trans_model
    t2p = np.asarray(tm.transition_id_to_pdf_array(), dtype=np.int64)
    tstats = np.zeros(tm.num_transition_ids + 1, dtype=np.float64)
    like, frames = 0.0, 0
    for utt, ali in alis.items():
        x = feats[utt]
        a = np.asarray(ali, dtype=np.int64)
        # Kaldi's TransitionModel::Accumulate adds the posterior to stats[trans_id]
        tstats += np.bincount(a, minlength=len(tstats))[:len(tstats)]
        pdfs = t2p[a]
        for t in range(len(a)):
            like += accs.accumulate_for_gmm(model.am, x[t], int(pdfs[t]), 1.0)
        frames += len(a)
    return accs, tstats, like, frames


def update(model: MonoModel, accs, tstats, mixup: int = 0, min_gaussian_occupancy: float = 10.0,
           power: float = 0.25, perturb_factor: float = 0.01, min_count: float = 20.0) -> dict:
    """``gmm-est``: MLE update of transitions and GMMs, then mix up to ``mixup`` Gaussians (0: no mix-up)."""
    from asrkt.hmm.kaldi import khg

    flags = khg.str_to_gmm_flags("mvwt")
    t_impr, t_count = model.trans_model.mle_update(tstats, khg.MleTransitionUpdateConfig())
    gopts = khg.MleDiagGmmOptions()
    gopts.min_gaussian_occupancy = min_gaussian_occupancy
    g_impr, g_count = khg.mle_am_diag_gmm_update(gopts, accs, int(flags), model.am)
    if mixup and mixup > model.am.num_gauss:
        occs = np.array([accs.get_acc(i).occupancy.sum() for i in range(accs.num_accs)], dtype=np.float32)
        model.am.split_by_count(occs, mixup, perturb_factor, power, min_count)
    return {"trans_impr_per_frame": t_impr / max(t_count, 1.0), "gmm_impr_per_frame": g_impr / max(g_count, 1.0)}


# ------------------------------------------------------------------------------------------- the trainer
@dataclass
class MonoOptions:
    num_iters: int = 40
    max_iter_inc: int = 30  # last iteration that increases the number of Gaussians
    tot_gauss: int = 1000
    realign_iters: tuple = REALIGN_ITERS
    power: float = 0.25
    first_beam: float = 6.0  # beam of the first re-alignment; later ones use `beam`
    beam: float = 10.0
    retry_factor: float = 4.0  # retry beam = retry_factor * beam during training
    final_beam: float = 10.0  # align_si.sh
    final_retry_beam: float = 40.0
    acoustic_scale: float = 0.1
    self_loop_scale: float = 0.1
    transition_scale: float = 1.0
    max_utts: int = 0  # train on the first N utterances only (0: all)
    equal_align_paths: int = 10  # flat start: the cheapest of N random paths (Kaldi: 1), see equal_align


def _load_set(data_dir, fopts: FeatureOptions, max_utts: int = 0):
    from asrkt.utils.tables import read_table

    text_path = Path(data_dir) / "text"
    if not text_path.is_file():
        raise fail("missing: transcripts are needed to align", text_path)
    text = read_table(text_path)
    utts = sorted(text)
    if max_utts:
        utts = utts[:max_utts]
    feats = dict(GmmFeatures(data_dir, fopts).items(utts))
    missing = [u for u in utts if u not in feats]
    if missing:
        logger.warning("%s: %d utterances have transcripts but no features (e.g. %s); skipped", data_dir,
                       len(missing), missing[0])
    utts = [u for u in utts if u in feats]
    return utts, {u: text[u].split() for u in utts}, feats


def compile_graphs(compiler: GraphCompiler, utts, words: dict) -> dict:
    out = {}
    for u in utts:
        try:
            out[u] = compiler.compile(u, words[u])
        except Exception as e:  # noqa: BLE001 - a bad transcript is reported, not fatal
            logger.warning("utterance %s: could not compile its training graph: %s", u, e)
    return out


def train_mono(data_dir, lang_dir, exp_dir, opts: MonoOptions = MonoOptions(),
               feature_opts: FeatureOptions = FeatureOptions(), align_dirs=()) -> dict:
    """Train a monophone system on ``data_dir`` into ``exp_dir``; align it and each of ``align_dirs``.

    Returns ``{set_name: {utt: transition ids}}`` for the training set (key ``train``) and the align dirs (keys:
    their folder names), and writes the model files (module docstring) and ``train_info.yaml``."""
    import yaml

    t0 = time.time()
    exp_dir = Path(exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    topo_text = (Path(lang_dir) / "topo").read_text()
    utts, words, feats = _load_set(data_dir, feature_opts, opts.max_utts)
    logger.info("%s: %d utterances, %d frames, feature dim %d", data_dir, len(utts),
                sum(len(f) for f in feats.values()), next(iter(feats.values())).shape[1] if feats else 0)
    model = init_mono(topo_text, feats.values(), feature_opts)
    compiler = GraphCompiler(model, lang_dir)
    graphs = compile_graphs(compiler, utts, words)

    alis, eq_failed = {}, []
    for u in utts:
        ali = equal_align(graphs[u], len(feats[u]), num_paths=opts.equal_align_paths) if u in graphs else None
        if ali is None:
            eq_failed.append(u)
        else:
            alis[u] = ali
    if eq_failed:
        logger.warning("equal alignment failed for %d of %d utterances (fewer frames than HMM states?): %s",
                       len(eq_failed), len(utts), ", ".join(eq_failed[:10]))
    if not alis:
        raise AsrktError(f"{data_dir}: no utterance could be aligned (equal alignment)")

    num_gauss = model.am.num_gauss
    inc_gauss = max(0, (opts.tot_gauss - num_gauss) // max(opts.max_iter_inc, 1))
    history = []
    accs, tstats, like, frames = accumulate(model, alis, feats)
    upd = update(model, accs, tstats, mixup=0, min_gaussian_occupancy=3.0)  # iteration 0 (gmm-est ... 0.acc)
    history.append({"iter": 0, "log_like": like / frames, "frames": frames, "num_gauss": model.am.num_gauss,
                    "aligned": len(alis), "failed": len(eq_failed), "seconds": round(time.time() - t0, 1), **upd})
    logger.info("iteration 0 (equal alignment): log-likelihood per frame %.3f over %d frames", like / frames, frames)
    beam = opts.first_beam
    for it in range(1, opts.num_iters):
        ti = time.time()
        astats = None
        if it in opts.realign_iters:
            aopts = AlignOptions(beam=beam, retry_beam=beam * opts.retry_factor, acoustic_scale=opts.acoustic_scale,
                                 transition_scale=opts.transition_scale, self_loop_scale=opts.self_loop_scale)
            alis, astats = align_set(model, utts, graphs, feats, aopts, what=f"iteration {it}: ")
            if not alis:
                raise AsrktError(f"iteration {it}: no utterance aligned")
            beam = opts.beam
        accs, tstats, like, frames = accumulate(model, alis, feats)
        num_gauss += inc_gauss if it <= opts.max_iter_inc else 0
        target = min(num_gauss, opts.tot_gauss) if it <= opts.max_iter_inc else 0
        upd = update(model, accs, tstats, mixup=target, power=opts.power)
        row = {"iter": it, "log_like": like / frames, "frames": frames, "num_gauss": model.am.num_gauss,
               "aligned": len(alis), "seconds": round(time.time() - ti, 1), **upd}
        if astats is not None:
            row.update(realigned=True, failed=len(astats.failed), retried=astats.retried)
        history.append(row)
        logger.info("iteration %d: log-likelihood per frame %.3f, %d Gaussians, %.1fs", it, like / frames,
                    model.am.num_gauss, time.time() - ti)

    model.info = {"data_dir": str(Path(data_dir).resolve()), "lang_dir": str(Path(lang_dir).resolve()),
                  "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(opts).items()},
                  "num_gauss": model.am.num_gauss, "num_pdfs": model.num_pdfs}
    model.save(exp_dir)

    results, align_info = align_all_sets(model, compiler, opts, (data_dir, utts, graphs, feats), align_dirs,
                                         feature_opts)
    info = {"model": MODEL_FILE, "num_pdfs": model.num_pdfs, "num_gauss": model.am.num_gauss,
            "feature_opts": asdict(feature_opts), "options": model.info["options"],
            "equal_align_failed": eq_failed[:50], "alignments": align_info, "iterations": history,
            "seconds": round(time.time() - t0, 1)}
    (exp_dir / "train_info.yaml").write_text(yaml.safe_dump(info, sort_keys=False))
    return results


# ------------------------------------------------------------------------------------- alignment outputs
def align_all_sets(model: MonoModel, compiler: GraphCompiler, opts, train: tuple, align_dirs,
                   feature_opts: FeatureOptions) -> tuple[dict, dict]:
    """The final alignments, with the final beams of ``opts`` (a MonoOptions or TriOptions): of the training set
    (``train`` = data dir, utterances, compiled graphs, features) and of every dir of ``align_dirs``. Returns
    ``({set name: alignments}, {set name: counts of aligned, retried and failed utterances})``."""
    final = AlignOptions(beam=opts.final_beam, retry_beam=opts.final_retry_beam, acoustic_scale=opts.acoustic_scale,
                         transition_scale=opts.transition_scale, self_loop_scale=opts.self_loop_scale)
    results, align_info = {}, {}
    sets = [("train", *train)]
    for d in align_dirs:
        u2, w2, f2 = _load_set(d, feature_opts)
        sets.append((Path(d).name, d, u2, compile_graphs(compiler, u2, w2), f2))
    for name, d, u, g, f in sets:
        alis, st = align_set(model, u, g, f, final, what=f"{name}: ")
        results[name] = alis
        align_info[name] = {"data_dir": str(Path(d).resolve()), "utterances": len(u), "aligned": st.done,
                            "retried": st.retried, "failed": len(st.failed), "failed_utts": st.failed[:50]}
    return results, align_info


def is_trained(exp_dir) -> bool:
    """A finished train_mono/train_tri output (what their CLIs reuse unless told to overwrite)."""
    exp = Path(exp_dir)
    return (exp / "train_info.yaml").is_file() and (exp / "targets" / "num_pdfs").is_file()


def write_outputs(exp_dir, alis: dict, nj: int) -> MonoModel:
    """The outputs of a trained GMM system besides its model: ``ali_<set>/`` (``nj`` shards) for every aligned
    set, ``targets/`` (frame_ce) and the training alignment's pdf counts (the priors). Returns the model."""
    from asrkt.hmm.priors import pdf_counts, write_counts

    exp = Path(exp_dir)
    model = MonoModel.load(exp)
    for name, a in alis.items():
        write_alignments(a, exp / f"ali_{name}", nj=nj)
    tdir = write_targets(model, alis, exp / "targets")
    write_counts(pdf_counts((ali_to_pdf(model, a) for a in alis["train"].values()), model.num_pdfs),
                 tdir / "ali_train_pdf.counts")
    return model


def shard(utts, nj: int) -> list[list[str]]:
    """Contiguous, C-sorted shards (Kaldi's split_data.sh keeps speakers together; here order is enough)."""
    utts = sorted(utts)
    n = max(1, min(nj, len(utts)))
    return [utts[i * len(utts) // n:(i + 1) * len(utts) // n] for i in range(n)]


def write_alignments(alis: dict, out_dir, nj: int = 1) -> Path:
    """``ali.JOB.ark`` (Kaldi int32 vectors of transition ids) and one merged ``ali.scp``; returns the scp."""
    from asrkt.io import write_int_vectors

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for j, part in enumerate(shard(alis, nj), 1):
        ark, scp = out_dir / f"ali.{j}.ark", out_dir / f"ali.{j}.scp"
        write_int_vectors(f"ark,scp:{ark},{scp}", ((u, np.asarray(alis[u], dtype=np.int32)) for u in part))
        lines.append(scp.read_text())
        scp.unlink()
    (out_dir / "ali.scp").write_text("".join(lines))
    (out_dir / "num_jobs").write_text(f"{len(lines)}\n")
    return out_dir / "ali.scp"


def ali_to_pdf(model: MonoModel, ali) -> np.ndarray:
    """``ali-to-pdf``: one pdf id per frame."""
    t2p = np.asarray(model.trans_model.transition_id_to_pdf_array(), dtype=np.int32)
    return t2p[np.asarray(ali, dtype=np.int64)]


def ali_to_phones(model: MonoModel, ali) -> list[int]:
    """``ali-to-phones``: the phone sequence, one id per phone instance.

    Alignments here come from reordered graphs (``TrainingGraphCompilerOptions.reorder``, Kaldi's default): each
    visit to an HMM state starts with the state's non-self-loop transition id and continues with self-loops, so
    a phone instance starts exactly at a frame in HMM state 0 whose transition is not a self-loop (no Kaldi
    topology returns to state 0)."""
    tm = model.trans_model
    return [tm.transition_id_to_phone(int(t)) for t in ali
            if tm.transition_ids_is_start_of_phone(int(t)) and not tm.is_self_loop(int(t))]


def write_targets(model: MonoModel, alis_by_set: dict, targets_dir) -> Path:
    """The frame_ce objective's targets dir: ``pdf.ark``/``pdf.scp`` (every set's utterances), ``num_pdfs``,
    and ``phones.ark``/``phones.scp`` (``ali-to-phones`` sequences)."""
    from asrkt.io import write_int_vectors

    d = Path(targets_dir)
    d.mkdir(parents=True, exist_ok=True)
    merged = {}
    for alis in alis_by_set.values():
        dup = set(merged) & set(alis)
        if dup:
            raise AsrktError(f"utterance {sorted(dup)[0]} is in two aligned sets")
        merged.update(alis)
    utts = sorted(merged)
    write_int_vectors(f"ark,scp:{d / 'pdf.ark'},{d / 'pdf.scp'}", ((u, ali_to_pdf(model, merged[u])) for u in utts))
    write_int_vectors(f"ark,scp:{d / 'phones.ark'},{d / 'phones.scp'}",
                      ((u, np.asarray(ali_to_phones(model, merged[u]), dtype=np.int32)) for u in utts))
    (d / "num_pdfs").write_text(f"{model.num_pdfs}\n")
    return d
