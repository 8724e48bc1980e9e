"""Context-dependent triphone GMM-HMM training as Kaldi's ``steps/train_deltas.sh`` (tri1), on the features
and the alignments of a monophone system (:mod:`asrkt.hmm.gmm`).

What :func:`train_tri` does (Kaldi's defaults in brackets):

1. **Tree statistics** (``acc-tree-stats``, context width 3, central position 1): per (left, central, right
   phone, pdf-class) the count, sum and sum of squares of the features of the monophone alignment; the
   context-independent phones (``phones/context_indep``: silence) keep no context, so the tree cannot split
   them by context, only by pdf-class.
2. **Questions** (``cluster-phones`` + ``compile-questions``): :func:`asrkt.hmm.tree_build.cluster_phones` on
   the phone sets of ``phones/sets.int``, plus :func:`extra_questions` (``phones/extra_questions.int``, else
   the silence and the non-silence phones, as Kaldi's ``prepare_lang.sh`` writes there).
3. **Tree** (``build-tree``, roots from ``phones/roots.txt``): greedy splitting to ``num_leaves`` [2000] leaves
   while a split gains more than ``thresh`` [300], then leaf clustering at the smallest split's gain.
4. **Init** (``gmm-init-model``): one Gaussian per leaf from the tree statistics (variance floor 0.01); a leaf
   without statistics copies the monophone GMM of its phone and pdf-class. Transition probabilities start from
   the topology, as Kaldi.
5. **Alignment conversion** (``convert-ali``): each frame's transition id is mapped to the new model's through
   its phone, HMM state, transition index and the new tree's pdf for its phone context.
6. **Iterations** [35]: accumulate, re-estimate, mix up (``tot_gauss`` [10000] reached linearly over
   ``max_iter_inc`` [25] iterations, starting from one Gaussian per leaf), re-align on ``realign_iters`` [10 20
   30] with beam 10 / retry beam 40 -- :mod:`asrkt.hmm.gmm`'s functions, as for the monophones -- with the
   optional silence's likelihood scaled by ``boost_silence`` [1.0] (``gmm-boost-silence``; many Kaldi recipes
   pass 1.25) in the re-alignments.
7. **Final alignments** of the training set and any ``align_dirs`` (as ``train_mono``).

The model is a :class:`asrkt.hmm.gmm.MonoModel` (the same container: transition model, AmDiagGmm, tree), so
graph building, decoding and the targets work unchanged; the exp dir also gets ``questions.txt`` (phone names)
and the tree's figures in ``train_info.yaml``.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from asrkt.hmm.tree import PDF_CLASS, map_event
from asrkt.utils.atomic import atomic_write_text
from asrkt.utils.errors import AsrktError, fail

logger = logging.getLogger(__name__)


# -------------------------------------------------------------------------------------- transition ids
def topo_pdf_classes(topo_text: str) -> dict:
    """{phone: [pdf-class of HMM state 0, 1, ...]} of the emitting states (no ``<ForwardPdfClass>`` topologies)."""
    if "<ForwardPdfClass>" in topo_text:
        raise AsrktError("topologies with separate forward/self-loop pdf-classes are not supported")
    out = {}
    for entry in re.findall(r"<TopologyEntry>(.*?)</TopologyEntry>", topo_text, re.S):
        phones = [int(p) for p in re.search(r"<ForPhones>(.*?)</ForPhones>", entry, re.S).group(1).split()]
        classes = [int(c) for _, c in sorted((int(s), c) for s, c in
                                             re.findall(r"<State>\s*(\d+)\s*<PdfClass>\s*(\d+)", entry))]
        for p in phones:
            out[p] = classes
    if not out:
        raise AsrktError("no <TopologyEntry> in the topology")
    return out


class TransitionInfo:
    """Per transition id: phone, HMM state, pdf-class, pdf, transition index, start-of-phone; and the
    transition state of each (phone, HMM state, pdf).

    The wheel binds no accessor for a transition state's tuple, so the tuples are rebuilt as Kaldi's
    ``TransitionModel::ComputeTuples`` does (every (phone, HMM state, pdf) the tree allows, sorted) and checked
    against the transition model's own phone and pdf of every state."""

    def __init__(self, trans_model, tree, topo_text: str):
        classes = topo_pdf_classes(topo_text)
        phones = sorted(classes)
        npc = [0] * (max(phones) + 1)
        for p in phones:
            npc[p] = max(classes[p]) + 1
        states_of = {}
        for p in phones:
            for h, c in enumerate(classes[p]):
                states_of.setdefault((p, c), []).append(h)
        tuples = sorted((p, h, pdf) for pdf, lst in enumerate(tree.get_pdf_info(phones, npc))
                        for p, c in lst for h in states_of[(p, c)])
        tm = trans_model
        if len(tuples) != tm.num_transition_states:
            raise AsrktError(f"transition model has {tm.num_transition_states} transition states, the tree and "
                             f"topology give {len(tuples)}: model and tree do not match")
        state2id = np.asarray(tm.state2id, dtype=np.int64)
        for s, (p, h, pdf) in enumerate(tuples, 1):
            tid = int(state2id[s])
            if tm.transition_id_to_phone(tid) != p or tm.transition_id_to_pdf(tid) != pdf:
                raise AsrktError(f"transition state {s}: expected phone {p} pdf {pdf}, the model says phone "
                                 f"{tm.transition_id_to_phone(tid)} pdf {tm.transition_id_to_pdf(tid)}")
        self.tuples, self.state2id = tuples, state2id
        self.state_of = {t: s for s, t in enumerate(tuples, 1)}
        self.classes = classes
        n = tm.num_transition_ids + 1
        id2state = np.asarray(tm.id2state, dtype=np.int64)[:n]
        self.phone, self.hmm_state, self.pdf_class, self.pdf = (np.zeros(n, dtype=np.int64) for _ in range(4))
        for tid in range(1, n):
            p, h, pdf = tuples[id2state[tid] - 1]
            self.phone[tid], self.hmm_state[tid], self.pdf_class[tid], self.pdf[tid] = p, h, classes[p][h], pdf
        self.index = np.arange(n) - state2id[id2state]
        self.index[0] = 0
        self.self_loop = np.array([False] + [bool(tm.is_self_loop(t)) for t in range(1, n)])
        # a phone instance starts at its HMM state 0's non-self-loop transition (reordered graphs, see
        # asrkt.hmm.gmm.ali_to_phones)
        self.starts_phone = (self.hmm_state == 0) & ~self.self_loop
        self.starts_phone[0] = False

    def contexts(self, ali, N: int = 3, P: int = 1, utt: str = "utt"):
        """(frame's phone-instance index, context windows (instances x N), transition ids as an array)."""
        a = np.asarray(ali, dtype=np.int64)
        if len(a) == 0 or a.min() < 1 or a.max() >= len(self.phone):
            raise fail("alignment holds transition ids outside the model", utt=utt)
        starts = self.starts_phone[a]
        if not starts[0]:
            raise fail("alignment does not start at the start of a phone", utt=utt)
        inst = np.cumsum(starts) - 1
        seq = self.phone[a[starts]]
        padded = np.r_[np.zeros(P, dtype=np.int64), seq, np.zeros(N - P - 1, dtype=np.int64)]
        windows = np.stack([padded[k:k + len(seq)] for k in range(N)], axis=1)
        return inst, windows, a


def accumulate_tree_stats(info: TransitionInfo, alis: dict, feats: dict, ci_phones=(), N: int = 3, P: int = 1):
    """``acc-tree-stats``: :class:`asrkt.hmm.tree_build.TreeStats` of the aligned frames."""
    from asrkt.hmm.tree_build import TreeStats

    keys, xs = [], []
    ci = np.asarray(sorted(ci_phones), dtype=np.int64)
    for utt, ali in alis.items():
        x = feats[utt]
        if len(x) != len(ali):
            raise fail(f"alignment has {len(ali)} frames, features {len(x)}", utt=utt)
        inst, windows, a = info.contexts(ali, N, P, utt)
        k = np.empty((len(a), N + 1), dtype=np.int64)
        k[:, 0] = info.pdf_class[a]
        k[:, 1:] = windows[inst]
        is_ci = np.isin(k[:, 1 + P], ci)
        for pos in range(N):
            if pos != P:
                k[is_ci, 1 + pos] = -1  # no context keys for context-independent phones
        keys.append(k)
        xs.append(x)
    if not keys:
        raise AsrktError("no alignments to accumulate tree statistics from")
    return TreeStats.from_frames(np.concatenate(keys), np.concatenate(xs))


def convert_alignment(old: TransitionInfo, new: TransitionInfo, tree_root, ali, N: int = 3, P: int = 1,
                      utt: str = "utt", cache: dict | None = None) -> list:
    """``convert-ali``: the alignment in the new model's transition ids (same topology, new tree)."""
    cache = {} if cache is None else cache
    inst, windows, a = old.contexts(ali, N, P, utt)
    out = []
    for t, tid in enumerate(a.tolist()):
        p, h, c = int(old.phone[tid]), int(old.hmm_state[tid]), int(old.pdf_class[tid])
        ctx = tuple(windows[inst[t]].tolist())
        key = (ctx, c)
        pdf = cache.get(key)
        if pdf is None:
            ev = {k: v for k, v in enumerate(ctx)}
            ev[PDF_CLASS] = c
            pdf = map_event(tree_root, ev)
            if pdf is None:
                raise fail(f"the new tree has no pdf for phones {ctx} pdf-class {c}", utt=utt)
            cache[key] = pdf
        s = new.state_of.get((p, h, pdf))
        if s is None:
            raise fail(f"the new model has no transition state for phone {p} state {h} pdf {pdf}", utt=utt)
        out.append(int(new.state2id[s] + old.index[tid]))
    return out


def boost_silence(model, phones, boost: float):
    """``gmm-boost-silence``: a copy of ``model`` whose pdfs of ``phones`` have their mixture weights times
    ``boost`` (their likelihoods times ``boost``); ``model`` itself when ``boost`` is 1."""
    from dataclasses import replace

    from asrkt.hmm.kaldi import khg

    if boost == 1.0 or not phones:
        return model
    ok, pdfs = khg.get_pdfs_for_phones(model.trans_model, sorted(phones))
    if not ok:
        logger.warning("boost_silence: the silence phones share pdfs with other phones (boosted anyway)")
    am = khg.AmDiagGmm()
    am.copy_from_am_diag_gmm(model.am)
    for pdf in pdfs:
        gmm = am.get_pdf(pdf)  # a reference into the copy
        gmm.set_weights((np.asarray(gmm.weights, dtype=np.float64) * boost).astype(np.float32))
        gmm.compute_gconsts()
    return replace(model, am=am)


# ----------------------------------------------------------------------------------------------- init
def init_tri_model(tree_root, N: int, P: int, stats, topo_text: str, feature_opts, old_model=None,
                   var_floor: float = 0.01):
    """``gmm-init-model``: a :class:`asrkt.hmm.gmm.MonoModel` with one Gaussian per leaf of the tree."""
    from asrkt.hmm.gmm import MonoModel
    from asrkt.hmm.kaldi import khg
    from asrkt.hmm.lang import read_topology
    from asrkt.hmm.tree import to_context_dependency
    from asrkt.hmm.tree_build import leaf_stats

    tree = to_context_dependency(tree_root, N, P)
    tm = khg.TransitionModel(tree, read_topology(topo_text))
    _, c, a, b = leaf_stats(tree_root, stats, num_leaves=tree.num_pdfs)
    classes = topo_pdf_classes(topo_text)
    phones = sorted(classes)
    npc = [0] * (max(phones) + 1)
    for p in phones:
        npc[p] = max(classes[p]) + 1
    pdf_info = tree.get_pdf_info(phones, npc)
    am, no_stats = khg.AmDiagGmm(), []
    dim = stats.s1.shape[1]
    for pdf in range(tree.num_pdfs):
        if c[pdf] > 0:
            mean = a[pdf] / c[pdf]
            var = np.maximum(b[pdf] / c[pdf] - mean * mean, var_floor)
            gmm = khg.DiagGmm(nmix=1, dim=dim)
            gmm.set_weights(np.ones(1, dtype=np.float32))
            gmm.set_means(mean[None].astype(np.float32))
            gmm.set_invvars((1.0 / var)[None].astype(np.float32))
            gmm.compute_gconsts()
        else:
            no_stats.append(pdf)
            gmm = _old_gmm(old_model, pdf_info[pdf], pdf) if old_model is not None else None
            if gmm is None:
                raise AsrktError(f"tree leaf {pdf} (phones/pdf-classes {pdf_info[pdf]}) has no statistics and "
                                 "no old model to copy from")
        am.add_pdf(gmm)
    if no_stats:
        logger.warning("%d tree leaves had no statistics and copied the old model's GMM: %s", len(no_stats),
                       no_stats[:20])
    return MonoModel(tm, am, tree, topo_text, feature_opts)


def _old_gmm(old_model, phone_classes, pdf):
    """``InitAmGmmFromOld``: the old model's GMM of the leaf's first (phone, pdf-class), all-silence context."""
    from asrkt.hmm.kaldi import khg

    if not phone_classes:
        return None
    p, c = phone_classes[0]
    old = old_model.tree
    seq = [0] * old.central_position + [p] + [0] * (old.context_width - old.central_position - 1)
    ok, old_pdf = old.compute(seq, c)
    if not ok:
        return None
    return khg.DiagGmm(old_model.am.get_pdf(old_pdf))


# -------------------------------------------------------------------------------------------- trainer
@dataclass
class TriOptions:
    num_leaves: int = 2000
    tot_gauss: int = 10000
    num_iters: int = 35
    max_iter_inc: int = 25
    realign_iters: tuple = (10, 20, 30)
    boost_silence: float = 1.0  # gmm-boost-silence of the optional-silence phone before each realignment
    power: float = 0.25
    beam: float = 10.0
    retry_beam: float = 40.0
    acoustic_scale: float = 0.1
    self_loop_scale: float = 0.1
    transition_scale: float = 1.0
    thresh: float = 300.0  # build-tree --thresh
    cluster_thresh: float = -1.0  # build-tree --cluster-thresh (< 0: smallest split; 0: no clustering)
    context_width: int = 3
    central_position: int = 1
    final_beam: float = 10.0
    final_retry_beam: float = 40.0
    max_utts: int = 0


def _int_lines(path) -> list[list[int]]:
    return [[int(x) for x in line.split()] for line in open(path) if line.strip()]


def extra_questions(phones_dir) -> list[list[int]]:
    """``phones/extra_questions.int``; without one, the silence phones and the non-silence phones as two
    questions, which is what Kaldi's prepare_lang.sh puts there for position-independent phones."""
    ph = Path(phones_dir)
    if (ph / "extra_questions.int").is_file():
        return _int_lines(ph / "extra_questions.int")
    return [[p for line in _int_lines(ph / f) for p in line] for f in ("silence.int", "nonsilence.int")
            if (ph / f).is_file()]


def build_questions_and_tree(stats, lang_dir, topo_text: str, opts: TriOptions):
    """Questions (``cluster-phones``, extra questions, pdf-class questions) and the tree; (root, info, qs)."""
    from asrkt.hmm.lang import read_symbols
    from asrkt.hmm.tree_build import TreeOptions, build_tree, cluster_phones, pdf_class_questions, read_roots

    ph = Path(lang_dir) / "phones"
    for f in ("sets.int", "roots.txt"):
        if not (ph / f).is_file():
            raise fail("missing: the lang dir's phone sets (prepare_lang_hmm writes them)", ph / f)
    N, P = opts.context_width, opts.central_position
    qs = cluster_phones(stats, _int_lines(ph / "sets.int"), P)
    qs = sorted(set(qs) | {tuple(sorted(q)) for q in extra_questions(ph)})
    classes = topo_pdf_classes(topo_text)
    num_pdf_classes = {p: max(c) + 1 for p, c in classes.items()}
    questions = {k: qs for k in range(N)}
    questions[PDF_CLASS] = pdf_class_questions(max(num_pdf_classes.values()))
    roots = read_roots(ph / "roots.txt", read_symbols(Path(lang_dir) / "phones.txt"))
    topts = TreeOptions(max_leaves=opts.num_leaves, thresh=opts.thresh, cluster_thresh=opts.cluster_thresh, N=N, P=P)
    root, info = build_tree(stats, roots, questions, num_pdf_classes, topts)
    return root, info, qs


def _read_alignments(ali_dir, utts) -> dict:
    from asrkt.io import read_int_vectors

    scp = Path(ali_dir) / "ali.scp"
    if not scp.is_file():
        raise fail("missing: the monophone alignments (train_mono writes ali_train/ali.scp)", scp)
    wanted = set(utts)
    return {u: a.tolist() for u, a in read_int_vectors(f"scp:{scp}") if u in wanted}


def train_tri(data_dir, lang_dir, mono_dir, exp_dir, opts: TriOptions = TriOptions(), ali_dir=None,
              align_dirs=()) -> dict:
    """Train a triphone system into ``exp_dir`` from the monophone system in ``mono_dir`` and its alignments of
    ``data_dir`` (``ali_dir``, default ``<mono_dir>/ali_train``). Returns ``{set: {utt: transition ids}}`` as
    :func:`asrkt.hmm.gmm.train_mono` (key ``train`` and the align dirs' names)."""
    import yaml

    from asrkt.hmm.gmm import (AlignOptions, GraphCompiler, MonoModel, _load_set, accumulate, align_all_sets,
                               align_set, compile_graphs, update)
    from asrkt.hmm.lang import read_symbols

    t0 = time.time()
    exp_dir = Path(exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    mono = MonoModel.load(mono_dir)
    topo_text = (Path(lang_dir) / "topo").read_text()
    if topo_text.split() != mono.topo_text.split():
        raise fail("the lang dir's topology differs from the monophone model's", Path(lang_dir) / "topo")
    N, P = opts.context_width, opts.central_position
    fopts = mono.feature_opts
    utts, words, feats = _load_set(data_dir, fopts, opts.max_utts)
    mono_alis = _read_alignments(ali_dir or Path(mono_dir) / "ali_train", utts)
    missing = [u for u in utts if u not in mono_alis]
    if missing:
        logger.warning("%d utterances have no monophone alignment (e.g. %s); left out", len(missing), missing[0])
    utts = [u for u in utts if u in mono_alis]
    if not utts:
        raise AsrktError(f"{data_dir}: no utterance has a monophone alignment")

    old_info = TransitionInfo(mono.trans_model, mono.tree, topo_text)
    ci = _int_lines(Path(lang_dir) / "phones" / "context_indep.int") \
        if (Path(lang_dir) / "phones" / "context_indep.int").is_file() else []
    ci = sorted(p for line in ci for p in line)
    sil_file = Path(lang_dir) / "phones" / "optional_silence.int"
    sil = [p for line in _int_lines(sil_file) for p in line] if sil_file.is_file() else []
    stats = accumulate_tree_stats(old_info, mono_alis, feats, ci, N, P)
    logger.info("tree statistics: %d events over %.0f frames", len(stats), stats.count.sum())
    root, tree_info, questions = build_questions_and_tree(stats, lang_dir, topo_text, opts)
    model = init_tri_model(root, N, P, stats, topo_text, fopts, old_model=mono)
    new_info = TransitionInfo(model.trans_model, model.tree, topo_text)
    cache: dict = {}
    alis = {u: convert_alignment(old_info, new_info, root, mono_alis[u], N, P, u, cache) for u in utts}
    logger.info("tree: %d leaves; model %d pdfs; %d alignments converted", tree_info["num_leaves"],
                model.num_pdfs, len(alis))
    id2phone = {i: p for p, i in read_symbols(Path(lang_dir) / "phones.txt").items()}
    atomic_write_text(exp_dir / "questions.txt", "".join(" ".join(id2phone.get(p, str(p)) for p in q) + "\n"
                                                         for q in questions))

    compiler = GraphCompiler(model, lang_dir)
    graphs = compile_graphs(compiler, utts, words)
    num_gauss = model.am.num_gauss
    inc_gauss = max(0, (opts.tot_gauss - num_gauss) // max(opts.max_iter_inc, 1))
    history = []
    for it in range(1, opts.num_iters):  # Kaldi's train_deltas.sh numbers these 1 .. num_iters-1
        ti = time.time()
        astats = None
        if it in opts.realign_iters:
            aopts = AlignOptions(beam=opts.beam, retry_beam=opts.retry_beam, acoustic_scale=opts.acoustic_scale,
                                 transition_scale=opts.transition_scale, self_loop_scale=opts.self_loop_scale)
            alis, astats = align_set(boost_silence(model, sil, opts.boost_silence), utts, graphs, feats, aopts,
                                     what=f"iteration {it}: ")
            if not alis:
                raise AsrktError(f"iteration {it}: no utterance aligned")
        accs, tstats, like, frames = accumulate(model, alis, feats)
        upd = update(model, accs, tstats, mixup=min(num_gauss, opts.tot_gauss), power=opts.power)
        if it <= opts.max_iter_inc:
            num_gauss += inc_gauss
        row = {"iter": it, "log_like": like / frames, "frames": frames, "num_gauss": model.am.num_gauss,
               "aligned": len(alis), "seconds": round(time.time() - ti, 1), **upd}
        if astats is not None:
            row.update(realigned=True, failed=len(astats.failed), retried=astats.retried)
        history.append(row)
        logger.info("iteration %d: log-likelihood per frame %.3f, %d Gaussians, %.1fs", it, like / frames,
                    model.am.num_gauss, time.time() - ti)

    options = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(opts).items()}
    model.info = {"data_dir": str(Path(data_dir).resolve()), "lang_dir": str(Path(lang_dir).resolve()),
                  "mono_dir": str(Path(mono_dir).resolve()), "options": options, "num_gauss": model.am.num_gauss,
                  "num_pdfs": model.num_pdfs, "kind": "tri"}
    model.save(exp_dir)

    results, align_info = align_all_sets(model, compiler, opts, (data_dir, utts, graphs, feats), align_dirs, fopts)
    info = {"model": "final.mdl.pkl", "kind": "tri", "num_pdfs": model.num_pdfs, "num_gauss": model.am.num_gauss,
            "feature_opts": asdict(fopts), "options": options, "tree": {**tree_info, "events": len(stats),
                                                                      "questions": len(questions)},
            "alignments": align_info, "iterations": history, "seconds": round(time.time() - t0, 1)}
    atomic_write_text(exp_dir / "train_info.yaml", yaml.safe_dump(info, sort_keys=False))
    return results
