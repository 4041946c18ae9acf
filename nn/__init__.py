"""rlgen's shared core: the run lifecycle, device, seeding, logging, checkpoints, epoch
positions and time budgets, schemas' ranges, config helpers, the trainer and batched-env
contracts, and small network blocks.

Nothing here knows about a particular experiment; `envs/`, `rl/` and `generative/` build
on it, never the other way round. The commands live apart in `nn/tools/`, on top of
everything (tests/test_layers.py holds the layers in place).
"""
