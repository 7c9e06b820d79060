"""Hyper-parameter sweeps: a whole grid of configurations trained in one pass over the features
(docs/design.md §4, §5).

grid      configurations: normalize_config, expand_grid, the command line's grids (names,
          aliases, defaults and the paper's grid from `sea_kernels.params`)
engine    train_many: every configuration at once on shared batches, each equal to
          `SeAClassifier` training it alone; evaluate_many; ManyResult
shards    under torchrun: the configurations split across ranks by cost, gathered on rank 0
results   SweepResult: table, ranking, JSON / CSV
search    sweep(): hold-out split, the grid, the pick on validation, the retrained winner;
          stratified_split

The public names `sea_kernels.sweep`, `train_many` and `SweepResult` are looked up from
`search`, `engine` and `results` (`sea_kernels.__init__`); this package is named `sweeps` so that
`sea_kernels.sweep` stays the function.
"""
