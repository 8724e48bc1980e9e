"""The CTC objective: token targets from ``text`` through the lang dir's tokenizer, CTC loss, token error rate
on the dev set; decoding greedy (best path) or, ``method: tlg``, on a TLG graph with an n-gram LM
(:mod:`asrkt.hmm.tlg`, graph dir from ``python -m asrkt.bin.make_tlg``)."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from asrkt.utils.tables import read_table
from asrkt.targets.objective import Objective, ObjectiveStats, TargetSource, register_objective
from asrkt.utils.errors import AsrktError, fail

logger = logging.getLogger(__name__)


def min_ctc_frames(target) -> int:
    """The fewest output frames CTC needs for ``target``: one per token plus a blank between repeats."""
    return len(target) + sum(1 for a, b in zip(target, target[1:]) if a == b)


def token_errors(hyp: list[int], ref: list[int]) -> int:
    """Levenshtein distance between token sequences (rapidfuzz, which jiwer uses too)."""
    from rapidfuzz.distance import Levenshtein

    return Levenshtein.distance(hyp, ref)


def ctc_best_path(logits: torch.Tensor, out_lengths, blank: int = 0) -> list[list[int]]:
    """Best path: argmax per frame, collapse repeats, drop blanks; frames past each length are ignored."""
    best = logits.argmax(-1).cpu()
    result = []
    for b, n in enumerate(torch.as_tensor(out_lengths).tolist()):
        path = torch.unique_consecutive(best[b, :n])
        result.append(path[path != blank].tolist())
    return result


class TokenTargets(TargetSource):
    """Token-id sequences of ``utts`` from ``data_dir/text`` (every utterance needs a non-empty transcript)."""

    def __init__(self, data_dir, utts: list[str], tokenizer):
        super().__init__()
        text_path = Path(data_dir) / "text"
        text = read_table(text_path)
        missing = [u for u in utts if u not in text]
        if missing:
            raise fail(f"{len(missing)} utterances with features have no transcript (first: '{missing[0]}')",
                       text_path, missing[0])
        for u in utts:
            try:
                ids = tokenizer.encode(text[u], utt=u)
            except AsrktError as e:
                raise AsrktError(f"{text_path}: {e}") from None
            if not ids:
                raise fail("empty transcript", text_path, u)
            self.targets[u] = ids
        warn_unknown_tokens(text_path, {u: text[u] for u in utts}, self.targets, tokenizer)


def warn_unknown_tokens(text_path, text: dict[str, str], targets: dict[str, list[int]], tokenizer) -> int:
    """One warning line when transcripts hold what the tokenizer never saw in training (sentencepiece maps it to
    <unk>, which no model can output: those tokens count as errors in every token error rate). Returns the
    number of such utterances."""
    unk = tokenizer.tokens.index(tokenizer.UNK) if tokenizer.UNK in tokenizer.tokens else None
    bad = [u for u, ids in targets.items() if unk is not None and unk in ids]
    if bad:
        known = set("".join(t for t in tokenizer.tokens))
        chars = sorted({c for u in bad for c in text[u] if c not in known and not c.isspace()})
        logger.warning("%s: %d of %d transcripts hold %s unknown to the tokenizer %s (e.g. utterance '%s'), "
                       "which become <unk> targets that no model outputs: retrain the tokenizer on text that "
                       "covers them, or expect them counted as errors", text_path, len(bad), len(targets),
                       "the characters " + " ".join(repr(c) for c in chars) if chars else "pieces",
                       tokenizer.lang_dir, bad[0])
    return len(bad)


class GreedyCtcDecoder:
    """Stage-7 decoder: best path, then the tokenizer's text."""

    def __init__(self, tokenizer, blank: int = 0):
        self.tokenizer, self.blank = tokenizer, blank

    def decode(self, log_probs: torch.Tensor, lengths) -> list[str]:
        return [self.tokenizer.decode(ids) for ids in ctc_best_path(log_probs, lengths, self.blank)]


@register_objective
class CtcObjective(Objective):
    """CTC over class ids with ``blank`` (0) as the blank; targets are token-id sequences (ids >= 1).

    Infeasible utterances (fewer output frames than :func:`min_ctc_frames`, e.g. a too-aggressive
    subsampling) are left out of the loss rather than trained on an infinite loss: they are counted in
    ``last_stats.skipped`` and the running ``num_infeasible``, and the first few are logged by name.
    """

    name = "ctc"
    hard_term = "ctc"
    metric = "ter"
    metric_label = "dev token error rate (%), greedy CTC"
    decoders = ("greedy", "tlg")
    _MAX_WARNINGS = 5

    def __init__(self, targets_dir=None, blank: int = 0):
        super().__init__(targets_dir)
        self.blank = blank
        self.num_infeasible = 0
        self._tokenizer = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from asrkt.targets.tokenizer import Tokenizer

            self._tokenizer = Tokenizer.load(self._need_targets_dir())
        return self._tokenizer

    @property
    def num_classes(self) -> int:
        return self.tokenizer.num_classes

    def target_source(self, data_dir, utts, subsampling: int = 1) -> TokenTargets:
        return TokenTargets(data_dir, utts, self.tokenizer)

    def check_train_data(self, data_dir) -> None:
        # A warning, not a refusal: a student trained on a subset must share its teacher's tokenizer. Stage 2
        # (prepare_lang) refuses to reuse a lang dir for other text.
        from asrkt.targets.tokenizer import check_tokenizer_text

        try:
            check_tokenizer_text(self._need_targets_dir(), Path(data_dir) / "text")
        except AsrktError as e:
            logger.warning("%s", e)

    def loss(self, logits: torch.Tensor, out_lengths: torch.Tensor, targets: list[list[int]],
             utt_ids: list[str] | None = None) -> torch.Tensor:
        """Summed CTC loss (float32) over the batch. ``logits`` (B, T, C), ``out_lengths`` (B,);
        ``utt_ids`` only names utterances in errors and warnings."""
        B, T, C = logits.shape
        if len(targets) != B:
            raise AsrktError(f"{len(targets)} target sequences for a batch of {B} utterances")
        out_lengths = torch.as_tensor(out_lengths, dtype=torch.long).cpu()  # ctc_loss reads lengths on the CPU
        lens = out_lengths.tolist()
        name = (lambda b: f"utterance '{utt_ids[b]}'") if utt_ids else (lambda b: f"batch item {b}")
        feasible, infeasible = [], []
        for b, target in enumerate(targets):
            bad = [i for i in target if not (0 <= i < C) or i == self.blank]
            if bad:
                raise AsrktError(f"{name(b)}: target id {bad[0]} is the blank or outside [1, {C}) "
                                 f"for a {C}-class model")
            (feasible if min_ctc_frames(target) <= lens[b] else infeasible).append(b)
        if infeasible:
            self.num_infeasible += len(infeasible)
            if self.num_infeasible - len(infeasible) < self._MAX_WARNINGS:
                logger.warning("CTC: skipping %d infeasible utterance(s) (target longer than output): %s%s",
                               len(infeasible), ", ".join(f"{name(b)} ({len(targets[b])} tokens, {lens[b]} "
                                                          f"frames)" for b in infeasible[:3]),
                               "" if self.num_infeasible < self._MAX_WARNINGS else
                               "; further ones are only counted")
        self.last_stats = ObjectiveStats(
            utterances=len(feasible), frames=sum(lens[b] for b in feasible),
            units=sum(len(targets[b]) for b in feasible), skipped=len(infeasible))
        if not feasible:
            return logits.float().sum() * 0.0  # keeps the graph, so backward() works on an all-bad batch
        idx = torch.tensor(feasible, dtype=torch.long, device=logits.device)
        log_probs = F.log_softmax(logits.index_select(0, idx).float(), dim=-1).transpose(0, 1)  # (T, B', C)
        flat = torch.tensor([i for b in feasible for i in targets[b]], dtype=torch.long, device=logits.device)
        target_lengths = torch.tensor([len(targets[b]) for b in feasible], dtype=torch.long)
        return F.ctc_loss(log_probs, flat, out_lengths[feasible], target_lengths, blank=self.blank,
                          reduction="sum", zero_infinity=True)

    def greedy_decode(self, logits: torch.Tensor, out_lengths: torch.Tensor) -> list[list[int]]:
        """Best path: argmax per frame, collapse repeats, drop blanks."""
        return ctc_best_path(logits, out_lengths, self.blank)

    def errors(self, logits, out_lengths, targets) -> tuple[int, int]:
        hyps = self.greedy_decode(logits, out_lengths)
        return sum(token_errors(h, r) for h, r in zip(hyps, targets)), sum(len(r) for r in targets)

    def build_decoder(self, cfg):
        if cfg.method not in self.decoders:
            raise AsrktError(f"unknown decoding method '{cfg.method}' for the ctc objective (known: "
                             f"{', '.join(self.decoders)})")
        if cfg.method == "tlg":
            if not getattr(cfg, "graph", ""):
                raise AsrktError("method tlg needs the TLG graph dir (--graph DIR, made by python -m "
                                 "asrkt.bin.make_tlg)")
            from asrkt.hmm.tlg import TlgDecoder  # the Kaldi wheels, only here

            return TlgDecoder(cfg.graph, acoustic_scale=cfg.acoustic_scale, beam=cfg.beam,
                              max_active=cfg.max_active, tokens=self.tokenizer.tokens)
        return GreedyCtcDecoder(self.tokenizer, blank=self.blank)

    def degenerate(self, logits, out_lengths) -> str | None:
        best = logits.argmax(-1)
        mask = torch.arange(best.shape[1], device=best.device).unsqueeze(0) < \
            torch.as_tensor(out_lengths, device=best.device).unsqueeze(1)
        if not bool((best[mask] != self.blank).any()):
            return "it outputs only the blank"
        return None
