"""rlgen's shared core: device, seeding, logging, checkpoints, config and small blocks.

Nothing here knows about a particular experiment; `rl/`, `generative/` and `envs/`
build on it, never the other way round.
"""
