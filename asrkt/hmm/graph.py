"""HCLG: the decoding graph of the hybrid objective, composed as Kaldi's ``utils/mkgraph.sh`` does, with kaldifst
(OpenFst) and kaldi-hmm-gmm:

1. ``LG = L_disambig o G``, ``determinize_star`` (log semiring), ``minimize_encoded``;
2. ``CLG = compose_context(LG)`` with the tree's context width (1 for monophones) and the disambiguation phones;
3. ``Ha = get_h_transducer(ilabels, tree, trans_model)`` (transition scale 1.0, no self-loops);
4. ``HCLGa = Ha o CLG``, ``determinize_star`` (log), the transition-id disambiguation symbols replaced by epsilon
   (Kaldi's ``fstrmsymbols``), ``minimize_encoded``;
5. ``HCLG = add_self_loops(HCLGa)`` with self-loop scale 0.1, reordered (Kaldi's defaults).

Kaldi's ``fstrmepslocal`` (a local epsilon removal) has no binding; it only makes the graph smaller, and
``determinize_star`` already removed epsilons before it, so it is left out.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from asrkt.utils.errors import AsrktError, fail

logger = logging.getLogger(__name__)


def read_fst(path):
    from asrkt.hmm.kaldi import kaldifst

    fst = kaldifst.StdVectorFst.read(str(path))
    if fst is None:  # kaldifst returns None for a missing or unreadable file
        raise fail("cannot read this FST (missing or not an OpenFst file)", path)
    return fst


def replace_ilabels(fst, labels) -> object:
    """A copy of ``fst`` whose input labels in ``labels`` are epsilon (Kaldi's ``fstrmsymbols``)."""
    from asrkt.hmm.kaldi import kaldifst

    labels = set(labels)
    out = kaldifst.StdVectorFst()
    for _ in range(fst.num_states):
        out.add_state()
    out.start = fst.start
    for s in range(fst.num_states):
        w = fst.final(s)
        if w.value != float("inf"):
            out.set_final(s, w.value)
        for a in kaldifst.ArcIterator(fst, s):
            il = 0 if a.ilabel in labels else a.ilabel
            out.add_arc(s, kaldifst.StdArc(il, a.olabel, a.weight.value, a.nextstate))
    return out


def make_lg(lang_dir, g_fst=None):
    """det(min(L_disambig o G)); ``g_fst`` defaults to ``lang_dir/G.fst``."""
    from asrkt.hmm.kaldi import kaldifst

    lang_dir = Path(lang_dir)
    L = read_fst(lang_dir / "L_disambig.fst")
    G = read_fst(g_fst or lang_dir / "G.fst")
    kaldifst.arcsort(L, sort_type="olabel")
    kaldifst.arcsort(G, sort_type="ilabel")
    LG = kaldifst.compose(L, G)
    if kaldifst.determinize_star(LG, use_log=True):
        raise AsrktError("determinization of L o G stopped early (max states)")
    kaldifst.minimize_encoded(LG)
    return LG


def make_hclg(lang_dir, model, g_fst=None, self_loop_scale: float = 0.1, transition_scale: float = 1.0):
    """The HCLG of ``model`` (a :class:`asrkt.hmm.gmm.MonoModel`, or anything with ``trans_model`` and
    ``tree``) with the lang dir's L_disambig.fst and G.fst."""
    from asrkt.hmm.kaldi import kaldifst, khg
    from asrkt.hmm.lang import load_lang

    t0 = time.time()
    lang = load_lang(lang_dir)
    LG = make_lg(lang_dir, g_fst)
    CLG, ilabels = kaldifst.compose_context(disambig_syms=lang.disambig_ids, context_width=model.tree.context_width,
                                            central_position=model.tree.central_position, ifst=LG)
    kaldifst.arcsort(CLG, sort_type="ilabel")
    Ha, disambig_tids = khg.get_h_transducer(ilabel_info=ilabels, ctx_dep=model.tree, trans_model=model.trans_model,
                                             config=khg.HTransducerConfig(transition_scale=transition_scale))
    kaldifst.arcsort(Ha, sort_type="olabel")
    HCLGa = kaldifst.compose(Ha, CLG)
    if kaldifst.determinize_star(HCLGa, use_log=True):
        raise AsrktError("determinization of H o CLG stopped early (max states)")
    HCLGa = replace_ilabels(HCLGa, disambig_tids)
    kaldifst.minimize_encoded(HCLGa)
    HCLG = khg.add_self_loops(self_loop_scale=self_loop_scale, disambig_syms=[], reorder=True,
                              trans_model=model.trans_model, ifst=HCLGa)
    kaldifst.arcsort(HCLG, sort_type="ilabel")
    logger.info("HCLG: %d states (LG %d, CLG %d) in %.1fs", HCLG.num_states, LG.num_states, CLG.num_states,
                time.time() - t0)
    return HCLG


def write_graph(lang_dir, model, graph_dir, g_fst=None) -> Path:
    """``graph_dir/HCLG.fst`` plus words.txt, phones.txt and phones/ as Kaldi's graph dirs have them."""
    import shutil

    graph_dir = Path(graph_dir)
    graph_dir.mkdir(parents=True, exist_ok=True)
    hclg = make_hclg(lang_dir, model, g_fst)
    tmp = graph_dir / "HCLG.fst.tmp"
    if not hclg.write(str(tmp)):
        raise AsrktError(f"could not write {tmp}")
    tmp.rename(graph_dir / "HCLG.fst")
    for name in ("words.txt", "phones.txt"):
        shutil.copy(Path(lang_dir) / name, graph_dir / name)
    if (graph_dir / "phones").exists():
        shutil.rmtree(graph_dir / "phones")
    shutil.copytree(Path(lang_dir) / "phones", graph_dir / "phones")
    return graph_dir / "HCLG.fst"


def ensure_graph(lang_dir, exp_dir, overwrite: bool = False, name: str = "graph") -> Path:
    """``exp_dir/<name>`` (e.g. graph, graph_nolm) for the GMM of ``exp_dir`` and the G of ``lang_dir``: made by
    :func:`write_graph` unless present (or ``overwrite``); returns the graph dir."""
    from asrkt.hmm.gmm import MonoModel

    exp = Path(exp_dir)
    if not name or "/" in name:
        raise AsrktError(f"a graph name is a folder name inside {exp}, got '{name}'")
    graph = exp / name
    if overwrite or not (graph / "HCLG.fst").is_file():
        write_graph(lang_dir, MonoModel.load(exp), graph)
    else:
        logger.info("%s: graph present, reused (--overwrite true to remake it)", graph)
    return graph
