"""Names of the files in a posterior dir (``exp/<teacher>/post_<set>/``), defined once for writer and readers."""

POST_INFO = "post_info.yaml"  # the sidecar: what the archives hold (kind, classes, frame shift, hashes, T)
POST_SCP = "post.scp"  # the merged script of the per-job archives post.JOB.ark
TOPK_KIND = "topk_posterior"  # ``kind`` of a Kaldi Posterior (top-k) dump
