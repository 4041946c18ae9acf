"""Custom environments (gymnasium API) and their batched torch twins.

Importing this package registers each env under an `rlgen/` id: `gymnasium.make` builds
one game, `gymnasium.make_vec(..., vectorization_mode="vector_entry_point")` the batched
twin as a gymnasium vector env (envs/vector.py).
"""

import gymnasium

gymnasium.register(id="rlgen/CartPole-v0", entry_point="envs.cartpole:CartPoleEnv",
                   vector_entry_point="envs.vector:CartPoleVectorEnv")
gymnasium.register(id="rlgen/Snake-v0", entry_point="envs.snake:SnakeEnv",
                   vector_entry_point="envs.vector:SnakeVectorEnv")
