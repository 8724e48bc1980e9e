"""Scoring: WER/CER with Kaldi's output lines (:mod:`asrkt.score.wer`), result records and the RESULTS.md
table made from them (:mod:`asrkt.score.results`)."""
