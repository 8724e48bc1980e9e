"""Result records (``<system>.yaml``) and the ``RESULTS.md`` table made from them.

A record is small and self-contained: which system (and its table ``group``, read from what the system is:
model type, loss terms, initialisation), on how much data, with which seed, config, commit and command, how
long it trained and why it stopped, and its dev/test scores (copied from
``exp/<system>/decode_<set>/score.yaml``). A run writes its records under ``exp/results/`` and its table to
``exp/RESULTS.md``; the recipe's committed reference records live in ``egs/<corpus>/results/`` and change
only by an explicit promotion (``make_results --promote``). Tables and charts are made from records only, so
``RESULTS.md`` can be regenerated on a machine that has none of the experiments.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import hashlib
import itertools
import math
import re
import statistics
from pathlib import Path

import yaml

from asrkt.data.kaldi_dir import DataDir, c_sorted
from asrkt.utils.atomic import atomic_write_text
from asrkt.utils.config import load_yaml
from asrkt.utils.errors import AsrktError, fail
from asrkt.utils.plotting import colormap, new_figure, save_png

RECORD_VERSION = 1
# Row groups of the table, in order, with the heading each gets.
GROUPS = {
    "teacher": "Teacher (DNN)",
    "lstm_scratch": "LSTM from scratch",
    "lstm_kt_finetune": "LSTM, KT pre-training + fine-tuning",
    "lstm_kt_regularised": "LSTM, KT-regularised",
    "other": "Other systems",
}
REQUIRED_KEYS = ("system", "group", "corpus", "seed", "commit", "results", "date")
SEED_SUFFIX = re.compile(r"[_.-]?seed\d+$")


HARD_TERMS = frozenset({"ctc", "ce", "hard"})  # loss terms on the transcripts/alignments; the rest transfer
TRAIN_INFO = "train_info.yaml"  # written by the trainer at the end of training
TRAIN_INFO_KEYS = ("loss_terms", "epochs", "best_epoch", "stop_reason")  # copied into the record


def read_train_info(exp_dir) -> dict:
    """``exp_dir/train_info.yaml`` (objective, metric, loss_terms, best_epoch, epochs, stop_reason, train_time_s,
    model_type, init_from), or {} for an exp folder trained before the trainer wrote it."""
    path = Path(exp_dir) / TRAIN_INFO
    if not path.is_file():
        return {}
    info = load_yaml(path)
    terms = info.get("loss_terms")
    if terms is not None and not isinstance(terms, dict):
        raise fail(f"'loss_terms' must map term names to weights, got {terms!r}", path)
    return info


def system_group(exp_dir, command: str | None = None) -> str:
    """The table group of a system from what it is (never from its name): the model type, the loss terms and
    their weights, and whether it started from another model, read from ``train_info.yaml``, else from the
    saved ``config.yaml`` and the training command (``--init-from``)."""
    exp_dir = Path(exp_dir)
    info = read_train_info(exp_dir)
    cfg = load_yaml(exp_dir / "config.yaml") if (exp_dir / "config.yaml").is_file() else {}
    model_type = info.get("model_type") or (cfg.get("model") or {}).get("type")
    init_from = info.get("init_from")
    if init_from is None and command:
        init_from = "--init-from" in command or "--init_from" in command
    terms = info.get("loss_terms")
    if terms is None and isinstance(cfg.get("loss"), dict) and "kd_alpha" in cfg["loss"]:
        alpha = float(cfg["loss"]["kd_alpha"])
        terms = {"kd": alpha, "ctc": 1.0 - alpha}
    terms = {k: float(v) for k, v in (terms or {}).items() if float(v) > 0}
    transfer = any(k not in HARD_TERMS for k in terms)
    hard = any(k in HARD_TERMS for k in terms)
    if model_type == "dnn":
        return "teacher"
    if model_type is None:
        return "other"
    if init_from:
        return "lstm_kt_finetune"
    if transfer and hard:
        return "lstm_kt_regularised"
    if transfer:
        return "other"  # pre-training on the teacher alone: not a finished system
    return "lstm_scratch"


def family_of(system: str) -> str:
    """Records of one family are the same system with different seeds: the name minus a ``_seedN`` tag."""
    return SEED_SUFFIX.sub("", system) or system


def yaml_config_hash(path) -> str:
    """The hash of a saved ``config.yaml``, computed as :func:`asrkt.utils.config.config_hash` does."""
    text = yaml.safe_dump(load_yaml(path), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def data_size(data_dir) -> dict:
    """Utterances and hours of a data dir (hours from utt2dur, else utt2num_frames x the frame shift)."""
    d = DataDir.load(data_dir, check_sorted=False)
    utts = len(d.utt2spk or d.text or {})
    hours = None
    if d.utt2dur:
        hours = sum(float(v) for v in d.utt2dur.values()) / 3600
    elif d.utt2num_frames and (Path(data_dir) / "feats_info.yaml").is_file():
        shift = load_yaml(Path(data_dir) / "feats_info.yaml").get("frame_shift_ms")
        if shift:
            hours = sum(int(v) for v in d.utt2num_frames.values()) * float(shift) / 1000 / 3600
    return {"utts": utts, "hours": round(hours, 4) if hours is not None else None}


def read_summary(exp_dir) -> list[dict]:
    """Rows of ``exp_dir/summary.tsv`` (one per epoch) as dicts of str; AsrktError if absent."""
    path = Path(exp_dir) / "summary.tsv"
    if not path.is_file():
        raise fail("training summary not found (is the training finished?)", path)
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return rows


def training_time_s(rows: list[dict], path="summary.tsv") -> float | None:
    """Total training time from summary.tsv: a cumulative column's last value, or the sum of per-epoch times."""
    if not rows:
        return None
    cols = list(rows[0])
    for name in ("elapsed_s", "elapsed", "total_time_s", "wall_s"):  # cumulative
        if name in cols:
            try:
                return float(rows[-1][name])
            except (TypeError, ValueError):
                raise fail(f"column '{name}' of the last row is not a number: {rows[-1][name]!r}", path) from None
    for name in ("time_s", "time", "epoch_time_s", "seconds", "epoch_s"):  # per epoch
        if name in cols:
            try:
                return float(sum(float(r[name]) for r in rows))
            except (TypeError, ValueError):
                raise fail(f"column '{name}' has a non-number", path) from None
    return None


# Decode folders ``<prefix><set>`` of one system: its objective's first decoding (CTC greedy, hybrid HCLG with
# the LM), hybrid without the LM (a uniform word loop: decode_nolm_), CTC through TLG with the LM (decode_lm_);
# a folder belongs to the longest prefix it starts with.
DECODE_PREFIXES = ("decode_", "decode_nolm_", "decode_lm_")


def decode_scores(exp_dir, prefix: str = "decode_") -> dict:
    """``{set: score.yaml contents}`` for every ``exp_dir/<prefix><set>/score.yaml``."""
    if prefix not in DECODE_PREFIXES:
        raise AsrktError(f"unknown decode prefix '{prefix}' (known: {', '.join(DECODE_PREFIXES)})")
    out = {}
    for score in sorted(Path(exp_dir).glob(f"{prefix}*/score.yaml")):
        name = score.parent.name
        if max((p for p in DECODE_PREFIXES if name.startswith(p)), key=len) == prefix:
            out[name[len(prefix):]] = load_yaml(score)
    return out


def make_record(system: str, exp_dir, recipe_dir, seed: int, commit: str, command: str,
                data: dict, group: str | None = None, pretrain_exp_dir=None, decode_prefix: str = "decode_") -> dict:
    """Gather one system's record from its exp folder (see the module docstring); its WERs from the decode
    folders ``<decode_prefix><set>`` (``decode_nolm_``: the same system scored without the LM)."""
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise fail("experiment directory not found", exp_dir)
    scores = decode_scores(exp_dir, decode_prefix)
    if not scores:
        raise fail(f"no {decode_prefix}<set>/score.yaml found: run asrkt.bin.decode first", exp_dir)
    results = {}
    for name, s in scores.items():
        results[name] = {k: s[k] for k in ("wer", "cer", "errors", "words", "ins", "del", "sub", "sentences",
                                          "sentence_errors", "kaldi_line", "model_sha1", "rtf") if k in s}
        decoder = s.get("decoder") or {}  # asrkt.bin.decode's config; decode_gmm puts the scale at the top
        if decoder.get("method") != "greedy" and s.get("acoustic_scale", decoder.get("acoustic_scale")) is not None:
            results[name]["acoustic_scale"] = s.get("acoustic_scale", decoder.get("acoustic_scale"))
    cfg = exp_dir / "config.yaml"
    rows = read_summary(exp_dir) if (exp_dir / "summary.tsv").is_file() else []
    info = read_train_info(exp_dir)
    record = {
        "version": RECORD_VERSION,
        "system": system,
        "family": family_of(system),
        "group": group or system_group(exp_dir, command),
        "corpus": Path(recipe_dir).resolve().name,
        "data": data,
        "seed": seed,
        "config_hash": yaml_config_hash(cfg) if cfg.is_file() else None,
        "commit": commit,
        "exp_dir": str(exp_dir),
        "results": results,
        "train_time_s": info.get("train_time_s", training_time_s(rows, exp_dir / "summary.tsv")),
        "epochs": len(rows) or None,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command,
    }
    record.update({k: info[k] for k in TRAIN_INFO_KEYS if k in info})
    if pretrain_exp_dir is not None:
        p_rows = read_summary(pretrain_exp_dir)
        record["pretrain_exp_dir"] = str(pretrain_exp_dir)
        record["pretrain_time_s"] = read_train_info(pretrain_exp_dir).get(
            "train_time_s", training_time_s(p_rows, Path(pretrain_exp_dir) / "summary.tsv"))
    if record["group"] not in GROUPS:
        raise AsrktError(f"unknown group '{record['group']}' (known: {', '.join(GROUPS)})")
    return record


def write_record(record: dict, path) -> None:
    atomic_write_text(path, yaml.safe_dump(record, sort_keys=False, allow_unicode=True))


def load_records(results_dir) -> list[dict]:
    """Every ``*.yaml`` record under ``results_dir``, checked; AsrktError naming a bad file."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise fail("results directory not found (run asrkt.bin.record_result first)", results_dir)
    records = []
    for path in sorted(results_dir.glob("*.yaml")):
        rec = load_yaml(path)
        missing = [k for k in REQUIRED_KEYS if k not in rec]
        if missing:
            raise fail(f"not a result record: missing {', '.join(missing)}", path)
        if not isinstance(rec["results"], dict):
            raise fail("'results' must map set names to scores", path)
        for name, s in rec["results"].items():
            if not isinstance(s, dict) or "wer" not in s:
                raise fail(f"results.{name} has no 'wer'", path)
        rec.setdefault("family", family_of(rec["system"]))
        rec.setdefault("data", {})
        rec["_path"] = str(path)
        records.append(rec)
    if not records:
        raise fail("no result records (*.yaml) found", results_dir)
    return records


@dataclasses.dataclass
class Row:
    """One table row: a family of records (same system, data size; one per seed)."""

    group: str
    family: str
    records: list[dict]

    def values(self, set_name: str, key: str = "wer") -> list[float]:
        return [r["results"][set_name][key] for r in self.records
                if set_name in r["results"] and r["results"][set_name].get(key) is not None]


def group_rows(records: list[dict]) -> list[Row]:
    rows: dict[tuple, Row] = {}
    for rec in records:
        key = (rec["group"], rec["family"], (rec.get("data") or {}).get("utts"))
        rows.setdefault(key, Row(rec["group"], rec["family"], [])).records.append(rec)
    order = {g: i for i, g in enumerate(GROUPS)}
    out = sorted(rows.values(), key=lambda r: (order.get(r.group, len(order)), r.family,
                                               (r.records[0].get("data") or {}).get("utts") or 0))
    for r in out:
        r.records.sort(key=lambda rec: rec["seed"])
    return out


def mean_std(values: list[float]) -> str:
    """``2.51`` for one value, ``2.51 ± 0.30`` (sample std) for several, ``-`` for none."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def fmt_time(seconds) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.2f}h"


def fmt_data(data: dict) -> str:
    utts, hours = data.get("utts"), data.get("hours")
    if utts is None and hours is None:
        return "-"
    if hours is None:
        size = None
    elif hours < 0.1:  # tiny test sets would all read "0.00 h"
        size = f"{hours * 60:.1f} min"
    else:
        size = f"{hours:.2f} h"
    parts = [f"{utts} utts" if utts is not None else None, size]
    return ", ".join(p for p in parts if p)


def guess_set_names(records: list[dict]) -> tuple[str | None, list[str]]:
    """Only for records made without the recipe's set names: dev among dev/valid/val/dev_clean, test among
    test/eval/test_clean. Recipes pass ``--dev-set`` and ``--test-sets`` to make_results instead."""
    names = {n for r in records for n in r["results"]}
    dev = next((n for n in ("dev", "valid", "val", "dev_clean") if n in names), None)
    test = next((n for n in ("test", "eval", "test_clean") if n in names), None)
    return dev, [test] if test else []


def eval_sets(dev: str | None, test_sets) -> list[str]:
    """The evaluation sets of the table: the test sets that are not the dev set, in the recipe's order."""
    return [t for t in dict.fromkeys(test_sets or []) if t != dev]


SIZE_SUFFIX = re.compile(r"_\d+pct(?=$|_)")  # kt.sh --train-fraction's tag (student_kt_ft_25pct)


def system_of_family(family: str) -> str:
    """The system a family belongs to at any training-data size: the family minus its ``_<P>pct`` tag."""
    return SIZE_SUFFIX.sub("", family)


def size_curves(records: list[dict], set_name: str) -> dict[str, list[tuple[float, float, float]]]:
    """``{system: [(training hours, mean WER, std), ...]}`` sorted by hours, for the systems seen at every
    training-data size (kt.sh --train-fraction) of their objective, when there are two or more: a variant run at
    some of the sizes only (e.g. another temperature) would draw a line that the others cannot be read against."""
    points: dict[str, list] = {}
    for row in group_rows(records):
        vals = row.values(set_name)
        hours = (row.records[0].get("data") or {}).get("hours")
        if vals and hours:
            points.setdefault(system_of_family(row.family), []).append(
                (float(hours), statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0))
    sizes: dict[str, set] = {}
    for system, pts in points.items():
        sizes.setdefault(objective_panel(system), set()).update(h for h, _, _ in pts)
    return {k: sorted(v) for k, v in points.items()
            if len(sizes[objective_panel(k)]) > 1 and {h for h, _, _ in v} == sizes[objective_panel(k)]}


def objective_panel(system: str) -> str:
    """The objective a system's records belong to, from its name: ``hybrid_`` systems apart from the CTC ones."""
    return "hybrid" if system.startswith("hybrid_") else "ctc"


def plot_by_data_size(records: list[dict], out_png, set_name: str) -> bool:
    """Line plots of ``set_name`` WER against training hours, one panel per objective (``hybrid_`` systems apart),
    one colour per system, dashed for its other decoding (``_lm`` / ``_nolm``); error bars: std over seeds.
    False (nothing written) when no system was trained at more than one data size."""
    curves = size_curves(records, set_name)
    if not curves:
        return False
    panels = sorted({objective_panel(k) for k in curves})
    fig = new_figure(figsize=(5.2 * len(panels), 4.2))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    palette = colormap("tab10")
    bases = sorted({re.sub(r"^hybrid_|_(no)?lm$", "", k) for k in curves})
    for ax, panel in zip(axes, panels):
        for system, pts in sorted(curves.items()):
            if objective_panel(system) != panel:
                continue
            base = re.sub(r"^hybrid_|_(no)?lm$", "", system)
            hours, means, stds = zip(*pts)
            ax.errorbar(hours, means, yerr=stds, marker="o", capsize=3, label=system,
                        color=palette(bases.index(base) % 10),
                        linestyle="--" if re.search(r"_(no)?lm$", system) else "-")
        ax.set_xlabel("training data (hours)")
        ax.set_ylabel(f"{set_name} WER (%)")
        ax.set_title(f"{panel}: {set_name} WER against training data", fontsize=9)
        ax.legend(fontsize=6, loc="upper right")
        ax.grid(alpha=0.3)
    save_png(fig, out_png, dpi=120)
    return True


def render_anchors(anchors: list[dict]) -> list[str]:
    """Markdown lines of published results on the corpus (``local/anchors.yaml``: system, test_wer, source and
    optionally dev_wer, note), shown beside ours, never mixed into our rows."""
    out = ["## Published results on this corpus (anchors, not ours)", "",
           "| system | dev WER | test WER | source |", "|---|---|---|---|"]
    for a in anchors:
        note = f" ({a['note']})" if a.get("note") else ""
        out.append(f"| {a['system']}{note} | {a.get('dev_wer', '-')} | {a['test_wer']} | {a['source']} |")
    return out + [""]


def render_markdown(records: list[dict], png_name: str | None = "results/results.png", dev: str | None = None,
                    test_sets=None, source: str = "results/*.yaml", anchors=None,
                    size_png_name: str | None = None) -> str:
    """The whole RESULTS.md text from the records; ``dev`` and ``test_sets`` are the recipe's set names
    (guessed from the records only when both are None); ``anchors``: published results shown beside ours;
    ``size_png_name``: the WER-against-data-size chart, when there is one."""
    if dev is None and test_sets is None:
        dev, test_sets = guess_set_names(records)
    tests = eval_sets(dev, test_sets)
    rows = group_rows(records)
    corpus = ", ".join(sorted({r["corpus"] for r in records}))
    out = [f"# Results: {corpus}", "",
           f"Generated by `python -m asrkt.bin.make_results` from the records in `{source}` "
           "(do not edit by hand). WER/CER in %; with several seeds, mean ± sample standard deviation.", ""]
    if png_name:
        out += [f"![{tests[0] if tests else dev or 'test'} WER per system]({png_name})", ""]
    if size_png_name:
        out += [f"![WER against training-data size]({size_png_name})", ""]
    header = ["system", "data", "seed", f"{dev or 'dev'} WER"]
    for t in tests:
        header += [f"{t} WER", f"{t} CER"]
    header += ["epochs", "train time", "commit"]
    for group, group_iter in itertools.groupby(rows, key=lambda r: r.group):
        out += [f"## {GROUPS.get(group, group)}", "", "| " + " | ".join(header) + " |",
                "|" + "|".join("---" for _ in header) + "|"]
        for row in group_iter:
            seeds = ",".join(str(r["seed"]) for r in row.records)
            commits = ",".join(dict.fromkeys(str(r["commit"]) for r in row.records))
            # KT + fine-tuning costs both trainings
            times = [r["train_time_s"] + (r.get("pretrain_time_s") or 0) for r in row.records
                     if r.get("train_time_s") is not None]
            epochs = ",".join(str(r.get("epochs") or "-") for r in row.records)  # one per seed, as the seed column
            cells = [row.family, fmt_data(row.records[0].get("data") or {}), seeds,
                     mean_std(row.values(dev)) if dev else "-"]
            for t in tests:
                cells += [mean_std(row.values(t)), mean_std(row.values(t, "cer"))]
            cells += [epochs, fmt_time(statistics.mean(times)) if times else "-", commits]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    if anchors:
        out += render_anchors(anchors)
    ordered = [rec for row in rows for rec in row.records]  # table order: by group, then system, then seed
    out += ["## Kaldi-style scores", "", "```"]
    for rec in ordered:
        for name in c_sorted(rec["results"]):
            line = rec["results"][name].get("kaldi_line")
            if line:
                out.append(f"{line}  # {rec['system']} seed {rec['seed']}")
    out += ["```", "", "## Commands", ""]
    for rec in ordered:
        cfg = f", config {rec['config_hash']}" if rec.get("config_hash") else ""
        out += [f"- `{rec['system']}` (seed {rec['seed']}, commit {rec['commit']}{cfg}, {rec['date']}):",
                "", "  ```sh", f"  {rec.get('command') or '(not recorded)'}", "  ```", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def render_comparison(records: list[dict], reference: list[dict], dev: str | None, test_sets,
                      reference_name: str = "RESULTS.md") -> str:
    """This run's systems next to the recipe's committed reference results (mean ± std over their seeds)."""
    tests = eval_sets(dev, test_sets)
    sets = ([dev] if dev else []) + tests
    ref_rows = {(r.group, r.family): r for r in group_rows(reference)}
    header = ["system", "seed"] + [f"{s} WER" for s in sets] + [f"reference {s} WER" for s in sets]
    out = [f"This run next to the reference results of the recipe ({reference_name}); WER in %.", "",
           "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in group_rows(records):
        ref = ref_rows.get((row.group, row.family))
        cells = [row.family, ",".join(str(r["seed"]) for r in row.records)]
        cells += [mean_std(row.values(s)) for s in sets]
        cells += [mean_std(ref.values(s)) if ref else "-" for s in sets]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def plot_results(records: list[dict], out_png, dev: str | None = None, test_sets=None) -> None:
    """Bar chart of test WER per system (mean over seeds, error bar = sample std), coloured by group."""
    rows = group_rows(records)
    if dev is None and test_sets is None:
        dev, test_sets = guess_set_names(records)
    tests = eval_sets(dev, test_sets)
    test = tests[0] if tests else dev  # no test set: chart the dev set rather than nothing
    labels, means, stds, colors = [], [], [], []
    palette = colormap("tab10")
    group_index = {g: i for i, g in enumerate(GROUPS)}
    for row in rows:
        vals = row.values(test) if test else []
        if not vals:
            continue
        labels.append(row.family + (f"\n({len(vals)} seeds)" if len(vals) > 1 else ""))
        means.append(statistics.mean(vals))
        stds.append(statistics.stdev(vals) if len(vals) > 1 else 0.0)
        colors.append(palette(group_index.get(row.group, len(GROUPS))))
    fig = new_figure(figsize=(max(4.0, 1.3 * len(labels) + 1), 3.6))
    ax = fig.subplots()
    x = range(len(labels))
    bars = ax.bar(x, means, yerr=stds, color=colors, capsize=4)
    for b, m, sd in zip(bars, means, stds):  # the value above the error bar
        ax.annotate(f"{m:.2f}", (b.get_x() + b.get_width() / 2, m + sd), ha="center", va="bottom",
                    fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(list(x), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(f"{test or 'test'} WER (%)")
    ax.set_title(f"{', '.join(sorted({r['corpus'] for r in records}))}: {test or 'test'} WER per system")
    ax.margins(y=0.15)
    save_png(fig, out_png, dpi=120)
