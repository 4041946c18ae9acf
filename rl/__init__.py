"""Reinforcement-learning algorithms (one per file) and the shared play/watch/eval loops."""
