"""The search loop: NNI experiment set-up, per-epoch records, checkpoints and resume."""
