"""Custom environments (gymnasium API) and their batched torch twins.

Importing this package registers each env under an `rlgen/` id for `gymnasium.make`.
"""

import gymnasium

gymnasium.register(id="rlgen/CartPole-v0", entry_point="envs.cartpole:CartPoleEnv")
gymnasium.register(id="rlgen/Snake-v0", entry_point="envs.snake:SnakeEnv")
