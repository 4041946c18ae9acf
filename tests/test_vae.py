"""The VAE: its loss terms, the latent grid, training end to end on mnist_5k, and the
generate / eval / watch tools."""

import json
import math
import os

import pytest
import torch
from PIL import Image

from generative import vae
from tests.conftest import call_tool, compose, error_line, run_cli

# its tests share fixtures trained once for the module: one worker runs them all
pytestmark = pytest.mark.xdist_group("test_vae")


def book_model():
    torch.manual_seed(0)
    return vae.MLPVAE(512, 2, "glorot_normal")


def test_book_defaults():
    cfg = compose("experiment=vae")
    assert (cfg.model.intermediate_dim, cfg.model.latent_dim, cfg.algo.batch_size,
            cfg.algo.epochs, cfg.algo.lr, cfg.algo.likelihood) == (512, 2, 256, 100, 1e-3, "mse784")
    assert cfg.data.name == "fashion_mnist"


@pytest.mark.parametrize("model", [book_model(), vae.ConvVAE([8, 16], 32, 2, "torch_default")])
def test_shapes(model):
    x = torch.rand(5, 784)
    mean, log_var = model.encode(x)
    assert mean.shape == log_var.shape == (5, 2)
    assert model.decode_logits(mean).shape == (5, 784)


def test_loss_terms_are_the_books():
    model = book_model()
    x = torch.rand(4, 784)
    gen = torch.Generator().manual_seed(0)
    reconstruction, kl = vae.elbo_terms(model, x, "mse784", gen)
    mean, log_var = model.encode(x)
    z = vae.reparameterize(mean, log_var, torch.Generator().manual_seed(0))
    decoded = torch.sigmoid(model.decode_logits(z))
    expected = 784 * torch.nn.functional.mse_loss(decoded, x, reduction="none").mean(1)
    torch.testing.assert_close(reconstruction, expected)
    expected_kl = 0.5 * (mean ** 2 + log_var.exp() - 1 - log_var).sum(1)
    torch.testing.assert_close(kl, expected_kl)
    assert torch.all(kl >= 0)


def test_latent_grid_orientation():
    model = book_model()
    grid = vae.latent_grid(model, 3, 2.0)
    assert grid.shape == (84, 84)
    top_left = torch.sigmoid(model.decode_logits(torch.tensor([[-2.0, 2.0]]))).view(28, 28)
    torch.testing.assert_close(grid[:28, :28], top_left)
    bottom_right = torch.sigmoid(model.decode_logits(torch.tensor([[2.0, -2.0]]))).view(28, 28)
    torch.testing.assert_close(grid[56:, 56:], bottom_right)


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("vae") / "run"
    run_cli("rlgen-train", "experiment=vae_mnist5k", "algo.epochs=2", "device=cpu",
            f"hydra.run.dir={run_dir}")
    return run_dir


def test_training_reports_held_out_elbo_terms(vae_run):
    metrics = json.loads((vae_run / "metrics.json").read_text())
    assert metrics["test_images"] == 1000 and metrics["epochs"] == 2
    first, last = metrics["history"]
    assert last["test_loss"] < first["test_loss"]
    assert last["test_loss"] == pytest.approx(last["test_reconstruction"] + last["test_kl"])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(vae_run)).Reload()
    assert {"loss", "test/loss", "test/reconstruction", "test/kl",
            "images_per_second"} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("loss")) == 2 * 16  # per batch: 4000 images / 256
    assert {"latent_grid", "reconstructions"} <= set(events.Tags()["images"])


def test_generate_writes_the_latent_grid(vae_run, tmp_path):
    out = tmp_path / "latent.png"
    call_tool("rlgen-generate", f"run={vae_run}", "grid=5", "range=3", f"out={out}")
    assert Image.open(out).size == (140, 140)
    result = call_tool("rlgen-generate", f"run={vae_run}", f"out={tmp_path}/no/such/dir.png",
                     check=False)
    assert "does not exist" in error_line(result)


def test_eval_prints_test_terms(vae_run):
    summary = json.loads(call_tool("rlgen-eval", f"run={vae_run}", "device=cpu").stdout)
    assert {"test_loss", "test_reconstruction", "test_kl", "test_images"} <= summary.keys()
    assert math.isfinite(summary["test_loss"])


def test_latent_explorer_headless(vae_run, tmp_path):
    shot = tmp_path / "explorer.png"
    out = call_tool("rlgen-watch", f"run={vae_run}", "frames=3", f"record={shot}").stdout
    assert "showed 3 frames" in out
    assert Image.open(shot).size == (800, 520)


def test_latent_explorer_follows_the_mouse(vae_run):
    """Posted mouse and key events move the decoded point and zoom the plane."""
    import pygame

    from generative import latent_explorer
    from nn.checkpoint import load_checkpoint

    os.environ["SDL_VIDEODRIVER"] = "dummy"
    cfg, model = vae.load_model(load_checkpoint(vae_run / "checkpoints" / "best.pt"), "cpu")
    seen = []

    def decode(point):
        seen.append(point.copy())
        with torch.no_grad():
            return torch.sigmoid(model.decode_logits(torch.tensor(point)[None])).view(28, 28).numpy()

    class Args:
        range, frames, record, fps = 4.0, 2, None, 1000

    pygame.display.init()
    original_get = pygame.event.get
    script = [[pygame.event.Event(pygame.MOUSEMOTION, pos=(0, 0), rel=(0, 0), buttons=(0, 0, 0)),
               pygame.event.Event(pygame.KEYDOWN, key=pygame.K_UP, mod=0, unicode="")], []]
    pygame.event.get = lambda: script.pop(0) if script else []
    try:
        result = latent_explorer.explore(decode, torch.zeros(4, 2).numpy(), [0, 1, 2, 3],
                                         [str(i) for i in range(10)], Args)
    finally:
        pygame.event.get = original_get
    assert result["extent"] == pytest.approx(5.0)
    assert seen[-1].tolist() == pytest.approx([-5.0, 5.0])  # top-left corner of the plane
