"""Sharded posterior dumps (asrkt.transfer.dump): the merge reads every job's archive back and refuses a dump
that does not cover the data dir exactly once with the teacher's frame counts; the checksum in post_info.yaml
does not depend on the number of jobs, and ``finish_posteriors --verify`` catches an archive changed later."""
from __future__ import annotations

import re
import shutil

import kaldiio
import pytest
import yaml

from asrkt.bin import finish_posteriors as finish_bin
from asrkt.bin import train as train_bin
from asrkt.data.kaldi_dir import read_table, write_table
from asrkt.io import read_posteriors
from asrkt.transfer.dump import finish_posteriors, posterior_checksum, utterance_digest, verify_posteriors
from asrkt.utils.errors import AsrktError
from test_eval_pipeline import _dump_jobs, setup  # noqa: F401 (the fixture: data dir, teacher checkpoint)


@pytest.mark.parametrize("topk", [0, 3])
def test_checksum_does_not_depend_on_the_number_of_jobs(setup, tmp_path, topk):  # noqa: F811
    infos = {}
    for nj in (1, 3):
        post_dir = tmp_path / f"post_{nj}"
        _dump_jobs(setup, post_dir, nj=nj, topk=topk)
        infos[nj] = finish_posteriors(post_dir, nj, data_dir=setup["data"], model_path=setup["teacher"])
    assert infos[1]["checksum"] == infos[3]["checksum"] and re.fullmatch(r"[0-9a-f]{40}", infos[1]["checksum"])
    assert infos[1]["num_utts"] == infos[3]["num_utts"] == 6
    # the documented definition, recomputed from another reader (kaldiio for dense matrices)
    post = tmp_path / "post_3" / "post.scp"
    items = read_posteriors(f"scp:{post}") if topk else kaldiio.load_scp(str(post)).items()
    assert posterior_checksum({u: utterance_digest(v) for u, v in items}) == infos[3]["checksum"]
    assert yaml.safe_load((tmp_path / "post_3" / "post_info.yaml").read_text())["checksum"] == infos[3]["checksum"]
    # another teacher output gives another checksum
    _dump_jobs(setup, tmp_path / "logits", nj=1, topk=topk, output="logits")
    if not topk:
        assert finish_posteriors(tmp_path / "logits", 1)["checksum"] != infos[1]["checksum"]


def test_verify_catches_an_archive_changed_after_the_dump(setup, tmp_path):  # noqa: F811
    post_dir = tmp_path / "post"
    _dump_jobs(setup, post_dir, nj=2)
    finish_posteriors(post_dir, 2, data_dir=setup["data"])
    finish_bin.main(["--verify", "--data-dir", str(setup["data"]), str(post_dir)])  # untouched: passes
    ark = post_dir / "post.2.ark"
    data = bytearray(ark.read_bytes())
    data[-3] ^= 0x40  # one bit of the last float of the last utterance: same size, still readable
    ark.write_bytes(bytes(data))
    with pytest.raises(AsrktError, match=r"post\.scp: checksum [0-9a-f]{40} of the posteriors differs from "):
        verify_posteriors(post_dir)
    with pytest.raises(SystemExit) as e:
        finish_bin.main(["--verify", str(post_dir)])
    assert e.value.code == 1
    exp = tmp_path / "student"  # a training run asked to verify stops before it starts
    with pytest.raises(SystemExit) as e:
        train_bin.main(["--train-dir", str(setup["data"]), "--valid-dir", str(setup["data"]), "--exp-dir", str(exp),
                        "--train-post", str(post_dir), "--valid-post", str(post_dir), "--loss.kd-alpha", "1",
                        "--verify-posteriors"])
    assert e.value.code == 1 and "checksum" in (exp / "log" / "train.log").read_text().splitlines()[-1]
    assert not (exp / "checkpoints").exists()
    info_path = post_dir / "post_info.yaml"
    info = yaml.safe_load(info_path.read_text())
    del info["checksum"]
    info_path.write_text(yaml.safe_dump(info))
    with pytest.raises(AsrktError, match=r"post_info\.yaml: has no checksum"):
        verify_posteriors(post_dir)


def test_finish_refuses_wrong_frame_counts_naming_job_and_utterance(setup, tmp_path):  # noqa: F811
    post_dir = tmp_path / "post"
    _dump_jobs(setup, post_dir, nj=2)
    data = shutil.copytree(setup["data"], tmp_path / "data")
    frames = read_table(data / "utt2num_frames")
    last = list(frames)[-1]  # in job 2
    frames[last] = str(int(frames[last]) + 7)  # the features changed after the dump
    write_table(data / "utt2num_frames", frames)
    with pytest.raises(AsrktError, match=rf"post\.2\.scp, utterance '{last}': \d+ frames, but the teacher's output "
                                         rf"for its {frames[last]} feature frames has \d+"):
        finish_posteriors(post_dir, 2, data_dir=data)
    assert not (post_dir / "post.scp").exists() and not (post_dir / "post_info.yaml").exists()


def test_finish_refuses_extra_utterances_and_miscounted_jobs(setup, tmp_path):  # noqa: F811
    post_dir = tmp_path / "post"
    _dump_jobs(setup, post_dir, nj=2)
    # a data dir without one of the dumped utterances: the dump is not of this set
    data = shutil.copytree(setup["data"], tmp_path / "data")
    feats = read_table(data / "feats.scp")
    first = list(feats)[0]
    del feats[first]
    write_table(data / "feats.scp", feats)
    with pytest.raises(AsrktError, match=rf"post\.1\.scp, utterance '{first}': posteriors of an utterance that has "
                                         "no features in the data dir"):
        finish_posteriors(post_dir, 2, data_dir=data)
    # a job whose archive holds other frames than it reported (e.g. rerun in part)
    info_path = post_dir / "post.1.info.yaml"
    info = yaml.safe_load(info_path.read_text())
    info["num_frames"] += 1
    info_path.write_text(yaml.safe_dump(info))
    with pytest.raises(AsrktError, match=r"post\.1\.scp: dump job 1 reported 3 utterances and \d+ frames but its "
                                         r"archive holds 3 and \d+"):
        finish_posteriors(post_dir, 2)
