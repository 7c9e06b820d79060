"""Training on fixed features (docs/design.md §1, §4, §7).

estimator      SeAClassifier: fit / predict / score / save / load (Alg. 1 and the baselines)
augmentations  one strategy object per `augment` value: batch loss, hooks, own state
baselines      ISDA and ME-ADA math for a linear head
checkpoint     training checkpoints and the saved-model format (tag, version, SHA-256 through
               data.writers.save_verified; every load verified)
devices        check_device: is this device usable here (estimator, sweep, train_many, CLI)
divergence     the one divergence rule, its messages, TrainingDiverged
grid           sweep configurations: normalize_config, expand_grid (names from params)
many           train_many: every configuration at once on shared batches; evaluate_many
results        SweepResult: table, ranking, JSON / CSV
sweep          sweep(): split, grid, pick, retrain; stratified_split (re-exports the above)
compare        compare(): methods × seeds, each selected on validation; mean ± std, paired 95% CI
metrics        top-1 and mean per-class accuracy
plots          training curves and sweep heat maps (PNG)
"""
