"""Generative experiments: character LSTM text generation, the VAE with a 2-D latent
space, the ACGAN that draws a chosen class, and the classifiers that judge its images."""
