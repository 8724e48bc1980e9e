"""Decision trees (asrkt.hmm.tree, asrkt.hmm.tree_build) and triphone training (asrkt.hmm.tri): Kaldi's binary
tree format read back by the wheel's ContextDependency, the split gain against a direct log-likelihood sum,
the question the splitter picks, phone clustering, and a tiny tri1 trained on the synthetic corpus of
test_hmm_gmm."""
from __future__ import annotations

import math

import numpy as np
import pytest
from test_hmm_gmm import FAST, RAW, make_corpus, phone_frames

from asrkt.hmm.kaldi import khg  # noqa: F401  (the wheels first, in their order)
from asrkt.hmm.tree import (PDF_CLASS, Const, Split, Table, context_dependency_bytes, from_context_dependency,
                            map_event, multimap, read_tree, to_context_dependency, write_tree)
from asrkt.hmm.tree_build import (Root, TreeOptions, TreeStats, best_split_for_key, build_tree, cluster_phones,
                                  gauss_objf, pdf_class_questions)
from asrkt.utils.errors import AsrktError


def hand_tree():
    """Phones 1..4; phone 1 (silence-like): pdf by pdf-class only; phones 2, 3: left context in {2} or not;
    phone 4: split on the right context {3, 4}, then pdf-class 0 vs the rest."""
    t = [None,
         Table(PDF_CLASS, [Const(0), Const(1), Const(2)]),
         Split(0, (2,), Const(3), Const(4)),
         Split(0, (2,), Const(5), Const(6)),
         Split(2, (3, 4), Split(PDF_CLASS, (0,), Const(7), Const(8)), Const(9))]
    return Table(1, t)


def test_tree_round_trip_and_the_wheel_maps_contexts_to_the_same_pdfs(tmp_path):
    root = hand_tree()
    path = write_tree(root, 3, 1, tmp_path / "tree")
    assert read_tree(path) == (root, 3, 1)
    cd = to_context_dependency(root, 3, 1)
    assert (cd.context_width, cd.central_position, cd.num_pdfs) == (3, 1, 10)
    # Kaldi's own writer produces the same bytes
    cd.write(True, str(tmp_path / "tree2"))
    assert (tmp_path / "tree2").read_bytes() == path.read_bytes()
    assert from_context_dependency(cd) == (root, 3, 1)
    cases = {((0, 1, 3), 2): 2, ((2, 2, 0), 0): 3, ((3, 2, 1), 1): 4, ((2, 3, 4), 2): 5, ((4, 3, 4), 0): 6,
             ((1, 4, 3), 0): 7, ((1, 4, 4), 2): 8, ((1, 4, 2), 0): 9, ((0, 4, 0), 1): 9}
    for (ctx, pc), pdf in cases.items():
        assert cd.compute(list(ctx), pc) == (True, pdf), (ctx, pc)
        assert map_event(root, {0: ctx[0], 1: ctx[1], 2: ctx[2], PDF_CLASS: pc}) == pdf
    assert not cd.compute([0, 5, 0], 0)[0]  # phone outside the table
    assert multimap(root, {1: 4}) == {7, 8, 9} and multimap(root, {1: 4, PDF_CLASS: 1}) == {8, 9}
    with pytest.raises(AsrktError, match="not a Kaldi binary tree"):
        from asrkt.hmm.tree import parse_context_dependency
        parse_context_dependency(context_dependency_bytes(root, 3, 1)[:-5])


def loglik(x):
    """Sum over frames of log N(x; ML mean, ML diagonal variance), computed directly."""
    m, v = x.mean(0), x.var(0)
    return float((-0.5 * (np.log(2 * math.pi * v) + (x - m) ** 2 / v)).sum())


def test_split_gain_equals_a_hand_computation():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, (40, 3))  # left context 2
    b = rng.normal(2.0, 0.5, (25, 3))  # left context 3
    keys = np.array([[0, 2, 5, 0]] * 40 + [[0, 3, 5, 0]] * 25)
    stats = TreeStats.from_frames(keys, np.concatenate([a, b]))
    assert len(stats) == 2 and stats.count.tolist() == [40, 25]
    assert gauss_objf(stats.count[0], stats.s1[0], stats.s2[0]) == pytest.approx(loglik(a))
    gain, yes = best_split_for_key(stats, np.arange(2), 0, [(2,), (3,), (2, 3)])
    hand = loglik(a) + loglik(b) - loglik(np.concatenate([a, b]))
    assert gain == pytest.approx(hand, rel=1e-9) and gain > 0 and yes == (2,)
    # the right context is the same everywhere: nothing to gain
    assert best_split_for_key(stats, np.arange(2), 2, [(0,)]) == (0.0, None)
    # a key absent from some rows (a context-independent phone) cannot be asked
    stats.keys[1, 1] = -1
    assert best_split_for_key(stats, np.arange(2), 0, [(2,)]) == (0.0, None)


def contextual_stats(seed=0):
    """Central phone 5 (pdf-classes 0, 1) between phones 3/4: the mean depends on the left phone only (and a
    little on the pdf-class); phone 6 has the same data whatever its context."""
    rng = np.random.default_rng(seed)
    keys, xs = [], []
    for left in (3, 4):
        for right in (3, 4):
            for pc in (0, 1):
                n = 30
                keys += [[pc, left, 5, right]] * n
                xs.append(rng.normal(4.0 * (left == 3) + 1.0 * pc, 1.0, (n, 2)))
                keys += [[pc, left, 6, right]] * n
                xs.append(rng.normal(-3.0, 1.0, (n, 2)))
    return TreeStats.from_frames(np.array(keys), np.concatenate(xs))


def test_splitting_picks_the_left_context():
    stats = contextual_stats()
    qs = [(3,), (4,), (3, 4), (5,), (6,)]
    questions = {0: qs, 1: qs, 2: qs, PDF_CLASS: pdf_class_questions(2)}
    roots = [Root((3,)), Root((4,)), Root((5,)), Root((6,))]
    npc = {3: 2, 4: 2, 5: 2, 6: 2}
    tree, info = build_tree(stats, roots, questions, npc, TreeOptions(max_leaves=5, thresh=1.0, cluster_thresh=0))
    assert info["splits"] == 1 and info["num_leaves"] == 5
    sub = tree.table[5]
    assert isinstance(sub, Split) and sub.key == 0 and sub.yes_set in ((3,), (4,))
    assert isinstance(tree.table[6], Const)  # phone 6: its context tells nothing
    # more leaves: the pdf-class comes next, the right context never gains enough
    tree, info = build_tree(stats, roots, questions, npc, TreeOptions(max_leaves=20, thresh=20.0, cluster_thresh=0))
    keys = set()
    stack = [tree.table[5]]
    while stack:
        n = stack.pop()
        if isinstance(n, Split):
            keys.add(n.key)
            stack += [n.yes, n.no]
    assert keys == {0, PDF_CLASS}
    # a huge threshold: no split; a not-split root is left alone too
    _, info = build_tree(stats, roots, questions, npc, TreeOptions(thresh=1e9))
    assert info["splits"] == 0 and info["num_leaves"] == 4
    _, info = build_tree(stats, roots[:2] + [Root((5,), split=False), Root((6,))], questions, npc,
                         TreeOptions(thresh=20.0, cluster_thresh=0))
    assert info["splits"] == 0
    with pytest.raises(AsrktError, match="not-shared"):
        build_tree(stats, [Root((5,), shared=False), Root((6,))], questions, npc)


def test_leaf_clustering_merges_what_a_split_separated_for_nothing():
    stats = contextual_stats()
    qs = [(3,), (4,)]
    questions = {0: qs, 2: qs, PDF_CLASS: pdf_class_questions(2)}
    roots = [Root((5,)), Root((6,))]
    npc = {5: 2, 6: 2}
    # threshold 0: phone 6 gets split on noise; clustering at the smallest real split merges such leaves back
    raw, info_raw = build_tree(stats, roots, questions, npc, TreeOptions(max_leaves=40, thresh=0.0, cluster_thresh=0))
    merged, info = build_tree(stats, roots, questions, npc, TreeOptions(max_leaves=40, thresh=0.0, cluster_thresh=50))
    assert info["merged"] > 0 and info["num_leaves"] < info_raw["num_leaves"]
    phone6 = {map_event(merged, {0: l, 1: 6, 2: r, PDF_CLASS: pc}) for l in (3, 4) for r in (3, 4) for pc in (0, 1)}
    assert len(phone6) == 1
    assert info["num_leaves"] == len(multimap(merged, {}))  # renumbered 0..L-1


def test_cluster_phones_groups_similar_phones():
    rng = np.random.default_rng(1)
    keys, xs = [], []
    for p, mean in ((1, 0.0), (2, 0.2), (3, 5.0), (4, 5.3)):
        keys += [[1, -1, p, -1]] * 50
        xs.append(rng.normal(mean, 0.5, (50, 2)))
    keys += [[0, -1, 1, -1]] * 10  # pdf-class 0 is not used for clustering
    xs.append(rng.normal(9.0, 0.5, (10, 2)))
    stats = TreeStats.from_frames(np.array(keys), np.concatenate(xs))
    qs = cluster_phones(stats, [[1], [2], [3], [4]])
    assert set(qs) == {(1, 2, 3, 4), (1, 2), (3, 4), (1,), (2,), (3,), (4,)}
    with pytest.raises(AsrktError, match="disjoint"):
        cluster_phones(stats, [[1, 2], [2]])


# ------------------------------------------------------------------------------------------------ tri1
TRI = dict(num_leaves=40, tot_gauss=120, num_iters=6, max_iter_inc=4, realign_iters=(2, 4), thresh=5.0)


@pytest.fixture(scope="module")
def tri(tmp_path_factory):
    from asrkt.hmm.gmm import train_mono
    from asrkt.hmm.tri import TriOptions, train_tri

    root = tmp_path_factory.mktemp("tri")
    lang, train, truth = make_corpus(root, n_utts=24, seed=0, name="train")
    _, dev, _ = make_corpus(root, n_utts=6, seed=1, name="dev")
    mono_alis = train_mono(train, lang, root / "mono", FAST, RAW)
    from asrkt.hmm.gmm import write_alignments
    write_alignments(mono_alis["train"], root / "mono" / "ali_train", nj=2)
    alis = train_tri(train, lang, root / "mono", root / "tri", TriOptions(**TRI), align_dirs=[dev])
    return root, lang, train, truth, mono_alis, alis


def test_tri_training_aligns_and_keeps_the_phones(tri):
    from asrkt.hmm.gmm import MonoModel, ali_to_phones
    from asrkt.hmm.lang import read_symbols
    import yaml

    root, lang, _, truth, _, alis = tri
    model = MonoModel.load(root / "tri")
    assert (model.tree.context_width, model.tree.central_position) == (3, 1)
    mono = MonoModel.load(root / "mono")
    info = yaml.safe_load((root / "tri" / "train_info.yaml").read_text())
    assert info["tree"]["splits"] > 0 and model.num_pdfs == info["tree"]["num_leaves"] <= TRI["num_leaves"]
    assert model.num_pdfs > mono.num_pdfs  # context-dependent
    assert model.am.num_gauss > model.num_pdfs  # mixed up
    assert info["alignments"]["train"]["failed"] == 0 and len(alis["dev"]) == 6
    id2phone = {i: p for p, i in read_symbols(lang / "phones.txt").items()}
    agree = total = 0
    for utt, ali in alis["train"].items():
        ref = phone_frames(truth[utt])
        assert [id2phone[p] for p in ali_to_phones(model, ali)] == [p for p, _ in truth[utt]]
        hyp = [id2phone[model.trans_model.transition_id_to_phone(int(t))] for t in ali]
        agree += sum(a == b for a, b in zip(hyp, ref))
        total += len(ref)
    assert agree / total > 0.9  # as the monophones (measured 0.93)
    assert read_tree(root / "tri" / "tree")[1:] == (3, 1)
    questions = [line.split() for line in (root / "tri" / "questions.txt").read_text().splitlines()]
    assert ["SIL", "SPN"] in questions  # the silence question of Kaldi's prepare_lang.sh extra_questions
    assert all([p] in questions for p in id2phone.values() if p != "<eps>" and not p.startswith("#"))


def test_converted_alignment_keeps_phones_states_and_follows_the_tree(tri):
    from asrkt.hmm.gmm import MonoModel
    from asrkt.hmm.tri import TransitionInfo, convert_alignment

    root, lang, _, _, mono_alis, _ = tri
    mono, model = MonoModel.load(root / "mono"), MonoModel.load(root / "tri")
    old = TransitionInfo(mono.trans_model, mono.tree, mono.topo_text)
    new = TransitionInfo(model.trans_model, model.tree, model.topo_text)
    tree_root, _, _ = from_context_dependency(model.tree)
    for utt in sorted(mono_alis["train"])[:4]:
        a = np.asarray(mono_alis["train"][utt])
        b = np.asarray(convert_alignment(old, new, tree_root, a))
        assert (old.phone[a] == new.phone[b]).all() and (old.hmm_state[a] == new.hmm_state[b]).all()
        assert (old.self_loop[a] == new.self_loop[b]).all()
        inst, windows, _ = old.contexts(a)
        for t in range(0, len(a), 7):  # the pdf is the wheel's answer for the frame's phone context
            ok, pdf = model.tree.compute(windows[inst[t]].tolist(), int(old.pdf_class[a[t]]))
            assert ok and pdf == model.trans_model.transition_id_to_pdf(int(b[t]))
    with pytest.raises(AsrktError, match="outside the model"):
        old.contexts([10 ** 6])


def test_cli_train_tri_writes_what_train_mono_writes(tri, tmp_path):
    from asrkt.bin.train_tri import main
    from asrkt.targets.frames import FrameCeObjective

    root, lang, train, truth, _, _ = tri
    exp = tmp_path / "tri"
    args = ["--num-leaves", "30", "--tot-gauss", "60", "--num-iters", "3", "--max-iter-inc", "2",
            "--realign-iters", "2", "--thresh", "5", "--nj", "2", str(train), str(lang), str(root / "mono"), str(exp)]
    main(args)
    for f in ("final.mdl.pkl", "tree", "num_pdfs", "train_info.yaml", "ali_train/ali.1.ark", "ali_train/ali.2.ark",
              "targets/pdf.scp", "targets/phones.scp", "targets/num_pdfs", "targets/ali_train_pdf.counts"):
        assert (exp / f).is_file(), f
    obj = FrameCeObjective(targets_dir=exp / "targets")
    assert obj.num_classes == int((exp / "num_pdfs").read_text())
    utt = sorted(truth)[0]
    assert len(obj.target_source(train, [utt]).targets[utt]) == len(phone_frames(truth[utt]))
    mtime = (exp / "final.mdl.pkl").stat().st_mtime_ns
    main(args)  # finished: reused
    assert (exp / "final.mdl.pkl").stat().st_mtime_ns == mtime


def test_tri_model_builds_a_graph_and_decodes(tri):
    """The pipeline after training (graph, decoder) takes the triphone model as it is."""
    from asrkt.hmm.decode import decode_data_dir
    from asrkt.hmm.gmm import MonoModel
    from asrkt.hmm.graph import write_graph
    from asrkt.hmm.lang import read_symbols
    from asrkt.hmm.lm import estimate_kn, make_g_fst
    from asrkt.utils.tables import read_table

    root, lang, train, _, _, _ = tri
    vocab = set(read_symbols(lang / "words.txt")) - {"<eps>", "#0", "<s>", "</s>"}
    lm = estimate_kn([t.split() for t in read_table(train / "text").values()], order=2, vocab=vocab, unk="<UNK>")
    lm.write(root / "lm.arpa")
    make_g_fst(root / "lm.arpa", lang / "words.txt", lang / "G.fst")
    write_graph(lang, MonoModel.load(root / "tri"), root / "tri" / "graph")
    dev = root / "data" / "dev"
    scores = decode_data_dir(root / "tri" / "graph", root / "tri", dev, root / "tri" / "decode_dev",
                             acoustic_scales=[0.1, 0.3])
    # Tolerance: at most one word error at the best scale (as the monophone test: mix-up draws from C's rand())
    errors = [int(s["kaldi_line"].split("[")[1].split("/")[0]) for s in scores.values()]
    assert min(errors) <= 1, [s["kaldi_line"] for s in scores.values()]


def test_boost_silence_scales_only_the_silence_likelihoods(tri):
    from asrkt.hmm.gmm import MonoModel
    from asrkt.hmm.kaldi import khg as k
    from asrkt.hmm.lang import read_symbols
    from asrkt.hmm.tri import boost_silence

    root, lang, _, _, _, _ = tri
    model = MonoModel.load(root / "tri")
    sil = read_symbols(lang / "phones.txt")["SIL"]
    boosted = boost_silence(model, [sil], 1.25)
    _, sil_pdfs = k.get_pdfs_for_phones(model.trans_model, [sil])
    x = np.random.default_rng(0).normal(size=model.am.dim).astype(np.float32)
    for pdf in range(model.num_pdfs):
        diff = boosted.am.log_likelihood(pdf, x) - model.am.log_likelihood(pdf, x)
        assert diff == pytest.approx(math.log(1.25) if pdf in sil_pdfs else 0.0, abs=1e-4)
    assert boost_silence(model, [sil], 1.0) is model
