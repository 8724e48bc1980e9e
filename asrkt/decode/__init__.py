"""Decoding: CTC decoders (:mod:`asrkt.decode.ctc`), inference batches (:mod:`asrkt.decode.batches`) and the
decode folder of one system on one data set (:mod:`asrkt.decode.run`)."""
