"""Decoding: objective-agnostic search (:mod:`asrkt.decode.search`; the decoders belong to the objectives), inference batches (:mod:`asrkt.decode.batches`) and the
decode folder of one system on one data set (:mod:`asrkt.decode.run`)."""
