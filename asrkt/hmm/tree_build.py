"""Decision-tree building as Kaldi's ``acc-tree-stats`` / ``cluster-phones`` / ``compile-questions`` /
``build-tree`` (``src/tree/build-tree.cc``, ``build-tree-utils.cc``), in numpy.

* **Stats** (:class:`TreeStats`): one row per event seen in the alignments -- the pdf-class and the phones of
  the context window (``-1`` where the event has no such key: context-independent phones such as silence keep
  only the central phone, as ``acc-tree-stats --ci-phones``) -- with the count, sum and sum of squares of the
  features, i.e. Kaldi's ``GaussClusterable``.
* **Objective** (:func:`gauss_objf`): ``GaussClusterable::Objf``, the log-likelihood of the data under one
  diagonal Gaussian with the ML mean and (floored) variance.
* **Questions** (:func:`cluster_phones`): ``AutomaticallyObtainQuestions``: top-down binary clustering of the
  phone sets by their pooled stats of pdf-class 1, every node of the cluster tree (the root and the original
  sets included) one question; pdf-class questions ``{0}, {0,1}, ...`` as ``compile-questions``.
* **Splitting** (:func:`build_tree`): ``BuildTree``: the stub map from ``roots.txt`` (one root per line; a
  ``shared`` root holds all pdf-classes of its phones), then greedy splitting -- always the leaf whose best
  question gains most -- while that gain exceeds ``thresh`` and there are fewer than ``max_leaves`` leaves; then
  ``ClusterEventMapRestrictedByMap`` merges leaves of the same root bottom-up while the loss is below the
  smallest split gain (``cluster_thresh`` < 0) or the given threshold, and the leaves are renumbered.

Question refinement (``--num-iters-refine``, 0 by default in Kaldi) is not implemented.
"""
from __future__ import annotations

import functools
import heapq
import logging
import math
from dataclasses import dataclass

import numpy as np

from asrkt.hmm.tree import PDF_CLASS, Const, Split, Table, map_event, map_leaves
from asrkt.utils.errors import AsrktError

logger = logging.getLogger(__name__)

LOG_2PI = math.log(2 * math.pi)


# ----------------------------------------------------------------------------------------------- stats
@dataclass
class TreeStats:
    """``keys[i] = (pdf_class, ctx_0, ..., ctx_{N-1})`` (-1: key absent), ``count[i]``, ``s1[i]``, ``s2[i]``."""

    keys: np.ndarray  # (n, N + 1) int
    count: np.ndarray  # (n,)
    s1: np.ndarray  # (n, D)
    s2: np.ndarray  # (n, D)

    def __len__(self) -> int:
        return len(self.count)

    @staticmethod
    def column(key: int) -> int:
        return key + 1  # PDF_CLASS (-1) -> column 0, context position k -> column k + 1

    def event(self, i: int) -> dict:
        row = self.keys[i]
        return {k - 1: int(v) for k, v in enumerate(row) if v >= 0}

    @classmethod
    def from_frames(cls, keys: np.ndarray, feats: np.ndarray) -> "TreeStats":
        """Sum the frames' features per distinct event (``keys``: one row per frame)."""
        if len(keys) == 0:
            raise AsrktError("no frames to accumulate tree statistics from")
        uniq, inv = np.unique(np.asarray(keys, dtype=np.int64), axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        x = np.asarray(feats, dtype=np.float64)
        order = np.argsort(inv, kind="stable")
        starts = np.r_[0, np.flatnonzero(np.diff(inv[order])) + 1]
        count = np.bincount(inv, minlength=len(uniq)).astype(np.float64)
        s1 = np.add.reduceat(x[order], starts, axis=0)
        s2 = np.add.reduceat((x * x)[order], starts, axis=0)
        return cls(uniq, count, s1, s2)

    def merge(self, other: "TreeStats") -> "TreeStats":
        """``sum-tree-stats``."""
        keys = np.concatenate([self.keys, other.keys])
        uniq, inv = np.unique(keys, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        n, d = len(uniq), self.s1.shape[1]
        count, s1, s2 = np.zeros(n), np.zeros((n, d)), np.zeros((n, d))
        np.add.at(count, inv, np.concatenate([self.count, other.count]))
        np.add.at(s1, inv, np.concatenate([self.s1, other.s1]))
        np.add.at(s2, inv, np.concatenate([self.s2, other.s2]))
        return TreeStats(uniq, count, s1, s2)


def gauss_objf(count, s1, s2, var_floor: float = 0.01) -> np.ndarray:
    """Kaldi's ``GaussClusterable::Objf`` for one or many (leading axes) sets of stats; 0 where count <= 0."""
    count = np.asarray(count, dtype=np.float64)
    s1, s2 = np.asarray(s1, dtype=np.float64), np.asarray(s2, dtype=np.float64)
    safe = np.where(count > 0, count, 1.0)[..., None]
    mean = s1 / safe
    var = s2 / safe - mean * mean
    floored = np.maximum(var, var_floor)
    dim = s1.shape[-1]
    per_frame = -0.5 * (var / floored).sum(-1) - 0.5 * (np.log(floored).sum(-1) + LOG_2PI * dim)
    return np.where(count > 0, per_frame * count, 0.0)


def _sums_by(values: np.ndarray, stats: TreeStats, idx: np.ndarray):
    """Stats of rows ``idx`` summed per distinct value: (values, count, s1, s2)."""
    vals, inv = np.unique(values, return_inverse=True)
    inv = inv.reshape(-1)
    count = np.bincount(inv, weights=stats.count[idx], minlength=len(vals))
    onehot = np.zeros((len(vals), len(idx)))
    onehot[inv, np.arange(len(idx))] = 1.0
    return vals, count, onehot @ stats.s1[idx], onehot @ stats.s2[idx]


@functools.lru_cache(maxsize=64)
def _question_matrix(questions: tuple) -> np.ndarray:
    """(questions, max value + 1) membership matrix, built once per question list."""
    m = np.zeros((len(questions), max((max(q) for q in questions if q), default=0) + 1))
    for i, q in enumerate(questions):
        m[i, list(q)] = 1.0
    return m


def best_split_for_key(stats: TreeStats, idx: np.ndarray, key: int, questions, var_floor: float = 0.01):
    """``FindBestSplitForKey``: (gain, yes-set) of the best question on ``key`` for rows ``idx``; (0, None) if no
    question gains or the key is absent from some row (e.g. context of a context-independent phone)."""
    if len(idx) <= 1 or not questions:
        return 0.0, None
    values = stats.keys[idx, stats.column(key)]
    if (values < 0).any():
        return 0.0, None
    vals, count, s1, s2 = _sums_by(values, stats, idx)
    qm = _question_matrix(tuple(tuple(q) for q in questions))
    member = np.zeros((len(questions), len(vals)))  # (questions, values): value in the yes-set
    inside = vals < qm.shape[1]
    member[:, inside] = qm[:, vals[inside]]
    yc, ys1, ys2 = member @ count, member @ s1, member @ s2
    tc, ts1, ts2 = count.sum(), s1.sum(0), s2.sum(0)
    gains = (gauss_objf(yc, ys1, ys2, var_floor) + gauss_objf(tc - yc, ts1 - ys1, ts2 - ys2, var_floor)
             - gauss_objf(tc, ts1, ts2, var_floor))
    gains = np.where((yc > 0) & (tc - yc > 0), gains, 0.0)
    best = int(np.argmax(gains))  # the first of equals, as Kaldi's strict '>'
    if gains[best] <= 0:
        return 0.0, None
    return float(gains[best]), tuple(sorted(questions[best]))


# ------------------------------------------------------------------------------------------- questions
def _two_means(c, a, b, var_floor: float, seed: int, tries: int = 10) -> np.ndarray:
    """Best 2-way partition (0/1 per point) of stats ``c, a, b`` by total Gaussian objf: moves single points
    while that gains, from ``tries`` starts (Kaldi's ``ClusterKMeans`` with ``num_tries`` 10 does this job)."""
    n = len(c)
    rng = np.random.default_rng(seed)

    def objf(k):
        return float(gauss_objf(tc[k], ta[k], tb[k], var_floor))

    best_assign, best_obj = None, -math.inf
    for t in range(tries):
        assign = rng.integers(0, 2, n) if t else (np.arange(n) >= n // 2).astype(int)
        if assign.min() == assign.max():
            assign[0] = 1 - assign[0]
        tc = [c[assign == k].sum() for k in (0, 1)]
        ta = [a[assign == k].sum(0) for k in (0, 1)]
        tb = [b[assign == k].sum(0) for k in (0, 1)]
        for _ in range(100):
            moved = False
            for i in range(n):
                k, o = assign[i], 1 - assign[i]
                if (assign == k).sum() == 1:
                    continue
                before = objf(k) + objf(o)
                tc[k], ta[k], tb[k] = tc[k] - c[i], ta[k] - a[i], tb[k] - b[i]
                tc[o], ta[o], tb[o] = tc[o] + c[i], ta[o] + a[i], tb[o] + b[i]
                if objf(k) + objf(o) > before + 1e-6:
                    assign[i], moved = o, True
                else:  # undo
                    tc[k], ta[k], tb[k] = tc[k] + c[i], ta[k] + a[i], tb[k] + b[i]
                    tc[o], ta[o], tb[o] = tc[o] - c[i], ta[o] - a[i], tb[o] - b[i]
            if not moved:
                break
        total = objf(0) + objf(1)
        if total > best_obj + 1e-6:
            best_assign, best_obj = assign.copy(), total
    return best_assign


def cluster_phones(stats: TreeStats, phone_sets, P: int = 1, pdf_classes=(1,), var_floor: float = 0.01,
                   seed: int = 0) -> list[tuple]:
    """``cluster-phones``: questions (sorted phone tuples) from top-down 2-means clustering of ``phone_sets``
    by their pooled stats of ``pdf_classes``: every node of the binary cluster tree, and each original set."""
    sets = [tuple(sorted(s)) for s in phone_sets]
    flat = [p for s in sets for p in s]
    if not sets or len(flat) != len(set(flat)):
        raise AsrktError("cluster_phones: phone sets must be non-empty and disjoint")
    keep = np.isin(stats.keys[:, 0], list(pdf_classes))
    central = stats.keys[:, stats.column(P)]
    n, d = len(sets), stats.s1.shape[1]
    c, a, b = np.zeros(n), np.zeros((n, d)), np.zeros((n, d))
    for i, s in enumerate(sets):
        rows = keep & np.isin(central, s)
        c[i], a[i], b[i] = stats.count[rows].sum(), stats.s1[rows].sum(0), stats.s2[rows].sum(0)
        if c[i] == 0:
            logger.warning("cluster_phones: no stats for phone set %s", s)
    out, todo = {tuple(sorted(flat))}, [list(range(n))]
    while todo:
        pts = todo.pop()
        if len(pts) < 2:
            continue
        assign = _two_means(c[pts], a[pts], b[pts], var_floor, seed + len(out))
        for part in ([p for p, s in zip(pts, assign) if s == 0], [p for p, s in zip(pts, assign) if s == 1]):
            out.add(tuple(sorted(p for i in part for p in sets[i])))
            todo.append(part)
    out.update(sets)
    return sorted(out)


def pdf_class_questions(max_num_pdf_classes: int) -> list[tuple]:
    """``compile-questions``' questions on the pdf-class: {0}, {0,1}, ..., {0..max-2}."""
    return [tuple(range(i)) for i in range(1, max_num_pdf_classes)]


# -------------------------------------------------------------------------------------------- roots
@dataclass
class Root:
    phones: tuple
    shared: bool = True  # one leaf for all pdf-classes of the phones (else one per pdf-class)
    split: bool = True


def read_roots(path, phone2id: dict) -> list[Root]:
    """Kaldi's ``roots.txt`` (``shared|not-shared split|not-split PHONE...``), phones by name or id."""
    from asrkt.utils.errors import fail

    roots = []
    for n, line in enumerate(open(path), 1):
        f = line.split()
        if not f:
            continue
        if len(f) < 3 or f[0] not in ("shared", "not-shared") or f[1] not in ("split", "not-split"):
            raise fail(f"bad roots line {line.strip()!r}", path, line=n)
        try:
            ph = tuple(sorted(int(p) if p.isdigit() else phone2id[p] for p in f[2:]))
        except KeyError as e:
            raise fail(f"unknown phone {e.args[0]}", path, line=n) from None
        roots.append(Root(ph, f[0] == "shared", f[1] == "split"))
    return roots


def stub_map(roots: list[Root], num_pdf_classes: dict, P: int = 1):
    """``GetStubMap``: a table on the central phone; per root one leaf (shared) or a table on the pdf-class.
    Returns (map, {leaf: root index})."""
    table, leaf_root, nxt = {}, {}, 0
    for r_i, r in enumerate(roots):
        if r.split and not r.shared:
            raise AsrktError(f"roots: phones {r.phones}: splitting a not-shared root is not supported (as Kaldi)")
        if r.shared:
            sub = Const(nxt)
            leaf_root[nxt], nxt = r_i, nxt + 1
        else:
            npc = max(num_pdf_classes[p] for p in r.phones)
            sub = Table(PDF_CLASS, [Const(nxt + k) for k in range(npc)])
            leaf_root.update({nxt + k: r_i for k in range(npc)})
            nxt += npc
        for p in r.phones:
            if p in table:
                raise AsrktError(f"roots: phone {p} is in two roots")
            table[p] = sub
    tab = [None] * (max(table) + 1)
    for p, sub in table.items():
        tab[p] = sub
    return Table(P, tab), leaf_root


# ------------------------------------------------------------------------------------------ splitting
@dataclass
class TreeOptions:
    max_leaves: int = 2000  # build-tree --max-leaves
    thresh: float = 300.0  # minimum log-likelihood gain of a split
    cluster_thresh: float = -1.0  # < 0: the smallest split gain; 0: no clustering
    var_floor: float = 0.01
    N: int = 3
    P: int = 1


class _Node:
    """A leaf being split (``DecisionTreeSplitter``)."""

    def __init__(self, leaf, idx, stats, questions, var_floor):
        self.leaf, self.idx, self.key, self.yes_set, self.gain = leaf, idx, None, None, 0.0
        self.yes = self.no = None
        for key in sorted(questions):
            g, ys = best_split_for_key(stats, idx, key, questions[key], var_floor)
            if g > self.gain:
                self.gain, self.key, self.yes_set = g, key, ys

    def to_map(self):
        if self.yes is None:
            return Const(self.leaf)
        return Split(self.key, self.yes_set, self.yes.to_map(), self.no.to_map())


def _replace_leaves(node, subtrees: dict):
    if node is None:
        return None
    if isinstance(node, Const):
        return subtrees.get(node.answer, node)
    if isinstance(node, Table):
        return Table(node.key, [_replace_leaves(c, subtrees) for c in node.table])
    return Split(node.key, node.yes_set, _replace_leaves(node.yes, subtrees), _replace_leaves(node.no, subtrees))


def build_tree(stats: TreeStats, roots: list[Root], questions: dict, num_pdf_classes: dict,
               opts: TreeOptions = TreeOptions()):
    """``BuildTree``: returns (event map with leaves 0..L-1, info dict). ``questions``: {key: [value tuples]}."""
    stub, leaf_root = stub_map(roots, num_pdf_classes, opts.P)
    num_leaves = len(leaf_root)
    nonsplit = [p for r in roots if not r.split for p in r.phones]
    # which stub leaf each stats row falls in
    row_leaf = np.array([_map_row(stub, stats, i) for i in range(len(stats))])
    splittable = ~np.isin(stats.keys[:, stats.column(opts.P)], nonsplit)
    nodes, heap = {}, []
    for leaf in range(num_leaves):
        n = _Node(leaf, np.flatnonzero((row_leaf == leaf) & splittable), stats, questions, opts.var_floor)
        nodes[leaf] = n
        heapq.heappush(heap, (-n.gain, leaf, id(n), n))
    total_gain, smallest, count = 0.0, math.inf, 0
    while heap and -heap[0][0] > opts.thresh and (opts.max_leaves <= 0 or num_leaves < opts.max_leaves):
        neg, _, _, n = heapq.heappop(heap)
        col = stats.keys[n.idx, stats.column(n.key)]
        in_yes = np.isin(col, n.yes_set)
        n.yes = _Node(n.leaf, n.idx[in_yes], stats, questions, opts.var_floor)
        n.no = _Node(num_leaves, n.idx[~in_yes], stats, questions, opts.var_floor)
        num_leaves += 1
        total_gain, smallest, count = total_gain - neg, min(smallest, -neg), count + 1
        for child in (n.yes, n.no):
            heapq.heappush(heap, (-child.gain, child.leaf, id(child), child))
    tree = _replace_leaves(stub, {leaf: n.to_map() for leaf, n in nodes.items()})
    frames = float(stats.count.sum())
    info = {"splits": count, "leaves_after_split": num_leaves, "gain_per_frame": total_gain / max(frames, 1.0),
            "smallest_split": smallest if count else 0.0, "frames": frames}
    logger.info("build_tree: %d splits, %d leaves, log-likelihood gain %.3f per frame over %.0f frames", count,
                num_leaves, info["gain_per_frame"], frames)
    thresh = opts.cluster_thresh if opts.cluster_thresh >= 0 else (smallest if count else 0.0)
    if thresh > 0:
        tree, removed, loss = cluster_leaves(tree, stub, stats, thresh, opts.var_floor)
        info.update(cluster_thresh=thresh, merged=removed, cluster_loss_per_frame=loss / max(frames, 1.0))
        logger.info("build_tree: clustering (threshold %.1f) merged %d leaves", thresh, removed)
    tree, n = renumber(tree)
    info["num_leaves"] = n
    return tree, info


def _map_row(tree, stats: TreeStats, i: int) -> int:
    a = map_event(tree, stats.event(i))
    if a is None:
        raise AsrktError(f"tree statistics event {stats.event(i)} has no leaf: a phone missing from roots.txt, "
                         "or context-independent phones sharing a root with others")
    return a


def leaf_stats(tree, stats: TreeStats, num_leaves: int | None = None):
    """Per leaf summed stats: (row leaves, count, s1, s2)."""
    rows = np.array([_map_row(tree, stats, i) for i in range(len(stats))])
    n = int(rows.max()) + 1 if num_leaves is None else num_leaves
    d = stats.s1.shape[1]
    c, a, b = np.zeros(n), np.zeros((n, d)), np.zeros((n, d))
    np.add.at(c, rows, stats.count)
    np.add.at(a, rows, stats.s1)
    np.add.at(b, rows, stats.s2)
    return rows, c, a, b


def cluster_leaves(tree, stub, stats: TreeStats, thresh: float, var_floor: float = 0.01):
    """``ClusterEventMapRestrictedByMap``: within each stub root, merge the pair of leaves whose merge loses
    least likelihood while that loss is below ``thresh``. Returns (tree, leaves removed, total loss)."""
    rows, c, a, b = leaf_stats(tree, stats)
    root_of = {}
    for i in range(len(stats)):
        root_of[int(rows[i])] = map_event(stub, stats.event(i))
    mapping = {leaf: leaf for leaf in range(len(c))}
    removed, loss = 0, 0.0
    for root in sorted(set(root_of.values())):
        ids = np.array(sorted(leaf for leaf, r in root_of.items() if r == root))
        if len(ids) < 2:
            continue
        C, A, B = c[ids].copy(), a[ids].copy(), b[ids].copy()
        obj = gauss_objf(C, A, B, var_floor)
        # loss of merging i and j, for every pair (inf on the diagonal and for merged-away leaves)
        D = obj[:, None] + obj[None, :] - gauss_objf(C[:, None] + C[None, :], A[:, None] + A[None, :],
                                                     B[:, None] + B[None, :], var_floor)
        np.fill_diagonal(D, np.inf)
        alive = np.ones(len(ids), dtype=bool)
        while True:
            i, j = np.unravel_index(int(np.argmin(D)), D.shape)
            if not D[i, j] <= thresh:
                break
            i, j = min(i, j), max(i, j)
            loss, removed = loss + float(D[i, j]), removed + 1
            C[i], A[i], B[i] = C[i] + C[j], A[i] + A[j], B[i] + B[j]
            obj[i] = gauss_objf(C[i], A[i], B[i], var_floor)
            alive[j] = False
            row = obj[i] + obj - gauss_objf(C[i] + C, A[i] + A, B[i] + B, var_floor)
            row[~alive] = np.inf
            D[i, :], D[:, i] = row, row
            D[i, i] = np.inf
            D[j, :], D[:, j] = np.inf, np.inf
            for leaf, tgt in mapping.items():
                if tgt == ids[j]:
                    mapping[leaf] = int(ids[i])
    return map_leaves(tree, lambda leaf: mapping.get(leaf, leaf)), removed, loss


def renumber(tree):
    """``RenumberEventMap``: leaves renumbered 0..L-1 in increasing order of their old ids; (tree, L)."""
    from asrkt.hmm.tree import leaves

    old = sorted(leaves(tree))
    new = {o: i for i, o in enumerate(old)}
    return map_leaves(tree, new.__getitem__), len(old)
