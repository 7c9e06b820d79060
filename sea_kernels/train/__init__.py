"""Training one classifier on fixed features (docs/design.md §1, §5, §10).

estimator       SeAClassifier: fit / predict / score / save / load (Alg. 1 and the baselines)
augmentations   one strategy object per `augment` value: batch loss, hooks, own state
baselines       ISDA and ME-ADA math for a linear head
checkpoint      training checkpoints and the saved-model format (tag, version, SHA-256 through
                data.writers.save_verified; every load verified)
devices         check_device: is this device usable here (estimator, sweeps, CLI)
distributed     torchrun: the process group, the rank's slice of a batch, agreement on errors
divergence      the one divergence rule, its messages, TrainingDiverged
metrics         top-1 and mean per-class accuracy
mlp             MLPProbe: Linear → GELU → SeALinear on frozen features, trained end to end
sklearn_compat  scikit-learn's contract: the base classes, input and target checks

The sweep engine is `sea_kernels.sweeps`, comparisons over seeds `sea_kernels.compare`, the PNG
plots `sea_kernels.plots`.
"""
