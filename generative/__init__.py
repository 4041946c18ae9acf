"""Generative experiments: character LSTM text generation (and, later, VAE and ACGAN)."""
