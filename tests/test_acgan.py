"""The ACGAN and its judge: shapes, what each training step may change, label smoothing
and class conditioning, the Frechet distance, and the tools end to end."""

import json

import pytest
import torch
from PIL import Image

from generative import acgan, acgan_nets, acgan_tools, classifier
from nn.errors import UserError
from tests.conftest import call_tool, compose, error_line

# its tests share fixtures trained once for the module: one worker runs them all
pytestmark = pytest.mark.xdist_group("test_acgan")

BOOK = compose("experiment=acgan").algo
SHARP = compose("experiment=acgan_sharp").algo


def nets():
    torch.manual_seed(0)
    return acgan_nets.Generator(100), acgan_nets.Discriminator(0.3)


def test_shapes_and_book_defaults():
    gen, disc = nets()
    images = gen(torch.rand(4, 100) * 2 - 1, torch.tensor([0, 3, 7, 9]))
    assert images.shape == (4, 1, 28, 28)
    assert images.min() >= -1 and images.max() <= 1
    realness, aux = disc(images)
    assert realness.shape == (4,) and aux.shape == (4, 10)
    cfg = compose("experiment=acgan")
    assert (cfg.algo.batch_size, cfg.algo.lr, cfg.algo.optimizer.betas, cfg.algo.soft_one,
            cfg.model.generator.latent_size, cfg.data.name) == (100, 2e-4, [0.5, 0.999], 0.95,
                                                                 100, "mnist")


def snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def changed(before, module):
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


def test_each_step_moves_only_its_own_network():
    gen, disc = nets()
    opt_g = torch.optim.Adam(gen.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = torch.rand(8, 1, 28, 28) * 2 - 1
    labels = torch.randint(0, 10, (8,))
    rng = torch.Generator().manual_seed(0)
    g0, d0 = snapshot(gen), snapshot(disc)
    acgan.discriminator_step(gen, disc, opt_d, real, labels, rng, BOOK)
    assert not changed(g0, gen)  # generator ran in inference mode: not even BN statistics
    assert changed(d0, disc) == set(disc.state_dict())
    g1, d1 = snapshot(gen), snapshot(disc)
    acgan.generator_step(gen, disc, opt_g, 16, rng, BOOK, "cpu")
    assert not changed(d1, disc)
    assert {k for k in changed(g1, gen) if "num_batches" not in k} >= {
        "dense.weight", "up.0.weight", "up.6.weight", "embedding.weight"}
    assert all(p.requires_grad for p in disc.parameters())  # unfrozen again


def test_soft_one_is_the_realness_target(monkeypatch):
    gen, disc = nets()
    targets = []
    original = torch.nn.functional.binary_cross_entropy_with_logits

    def spy(logits, target, *args, **kwargs):
        targets.append(target.clone())
        return original(logits, target, *args, **kwargs)

    monkeypatch.setattr(acgan.F, "binary_cross_entropy_with_logits", spy)
    rng = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(disc.parameters())
    acgan.discriminator_step(gen, disc, opt, torch.zeros(3, 1, 28, 28), torch.arange(3), rng,
                             BOOK)
    acgan.generator_step(gen, disc, torch.optim.Adam(gen.parameters()), 6, rng, BOOK, "cpu")
    assert [t.tolist() for t in targets] == [pytest.approx([0.95] * 3), pytest.approx([0.0] * 3),
                                             pytest.approx([0.95] * 6)]


def test_sharp_recipe_steps_hinge_shifts_and_real_only_classes(monkeypatch):
    torch.manual_seed(0)
    cfg = compose("experiment=acgan_sharp")
    gen = acgan_nets.LightGenerator(**{k: v for k, v in cfg.model.generator.items() if k != "_target_"})
    disc = acgan_nets.SpectralDiscriminator(cfg.model.discriminator.width)
    assert gen(torch.rand(5, 100), torch.arange(5)).shape == (5, 1, 28, 28)
    seen, classified = [], []
    forward = disc.forward
    monkeypatch.setattr(disc, "forward",
                        lambda x, c: seen.append((x.detach(), c)) or forward(x, c))
    original = acgan.F.cross_entropy
    monkeypatch.setattr(acgan.F, "cross_entropy",
                        lambda logits, y: classified.append(len(y)) or original(logits, y))
    real = torch.full((4, 1, 28, 28), -1.0)
    real[:, :, 10:18, 10:18] = 1.0
    rng = torch.Generator().manual_seed(0)
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-3)
    d = acgan.discriminator_step(gen, disc, opt_d, real, torch.arange(4), rng, SHARP)
    g0 = snapshot(gen)
    g = acgan.generator_step(gen, disc, torch.optim.Adam(gen.parameters()), 4, rng, SHARP, "cpu")
    assert classified == [4, 4]  # the classifier learns from the 4 real images only
    assert not torch.equal(seen[0][0][:4], real)  # shifted before the discriminator sees it
    assert seen[0][0][:4].sum() == real.sum()  # a shift moves the square, it does not crop it
    assert torch.equal(seen[0][1][:4], torch.arange(4))  # realness conditioned on the class
    assert d["d_realness"] >= 0 and changed(g0, gen)
    assert g["g_realness"].item() == pytest.approx(-forward(*seen[1])[0].mean().item(), abs=0.05)


def test_standing_statistics_fit_the_weights_they_are_computed_for():
    gen = acgan_nets.LightGenerator(100, 32, 8)
    acgan.standing_statistics(gen, seed=0)
    norm = gen.up[0]
    rng = torch.Generator().manual_seed(0)
    with torch.no_grad():
        h = gen.dense(torch.cat([acgan_nets.sample_z(2000, 100, rng, "cpu"),
                                 gen.embedding(acgan.sample_classes(2000, rng, "cpu"))], 1))
    mean = h.view(-1, 32, 7, 7).mean((0, 2, 3))
    torch.testing.assert_close(norm.running_mean, mean, atol=0.02, rtol=0.1)
    assert not gen.training and norm.momentum == 0.1  # momentum restored


def test_requested_class_reaches_the_generator():
    gen, _ = nets()
    gen.eval()
    z = torch.rand(1, 100) * 2 - 1
    three, seven = gen(z, torch.tensor([3])), gen(z, torch.tensor([7]))
    assert not torch.allclose(three, seven)
    gen.zero_grad()
    gen(z, torch.tensor([3])).sum().backward()
    touched = gen.embedding.weight.grad.abs().sum(1) > 0
    assert touched.tolist() == [i == 3 for i in range(10)]


def test_frechet_distance_matches_the_closed_form():
    torch.manual_seed(0)
    a = torch.randn(20000, 3) * torch.tensor([1.0, 2.0, 0.5])
    b = torch.randn(20000, 3) * torch.tensor([1.0, 1.0, 0.5]) + torch.tensor([3.0, 0.0, 0.0])
    # diagonal covariances: |mu|^2 + sum (sigma_a - sigma_b)^2 = 9 + 1
    assert acgan_tools.frechet_distance(a, b) == pytest.approx(10.0, rel=0.05)
    assert acgan_tools.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_classifier_shapes_and_shift_augmentation():
    model = classifier.MNISTConvNet([8, 16], 5, None, 0.0)  # the book's sizes
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10) and model.feature_dim == 256
    x = torch.full((1, 1, 28, 28), -1.0)
    x[0, 0, 10, 10] = 1.0
    shifted = classifier.random_shift(x, 2, torch.Generator().manual_seed(1))
    (row, col), = (shifted[0, 0] == 1).nonzero().tolist()
    assert abs(row - 10) <= 2 and abs(col - 10) <= 2 and shifted.sum() == x.sum()


@pytest.fixture(scope="module")
def judge_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("judge") / "run"
    classifier.train(compose("experiment=mnist_cnn", "algo.epochs=1", "device=cpu"), run_dir)
    return run_dir


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory, judge_run):
    run_dir = tmp_path_factory.mktemp("gan") / "run"
    # 3 steps of 100 real images (a random 300 of the 4,000): the book's batch, cheaply
    acgan.train(compose("experiment=acgan_mnist5k", "algo.epochs=1", "algo.epoch_images=300",
                        f"algo.judge={judge_run}", "algo.judge_per_class=5", "device=cpu"),
                run_dir)
    return run_dir


def test_judge_learns_real_digits(judge_run):
    metrics = json.loads((judge_run / "metrics.json").read_text())
    assert metrics["test_images"] == 1000 and metrics["best_test_accuracy"] > 0.8


def test_the_judge_scores_real_digits_as_its_own_accuracy_and_wrong_labels_as_misses(judge_run):
    """The ACGAN's judge, given real held-out digits as if generated: its class accuracy
    is the classifier's own; asked for the wrong class, it finds almost none."""
    from generative.acgan_tools import judge_images
    from generative.datasets import load_images

    judge = classifier.load_judge(str(judge_run), torch.device("cpu"))
    data = load_images(compose("experiment=mnist_cnn").data)
    images, labels = classifier.to_model_input(data.test_images), data.test_labels
    right = judge_images(judge, images, labels)
    assert right["class_accuracy"] == pytest.approx(classifier.accuracy(judge, images, labels))
    assert right["class_accuracy"] > 0.8 and right["features"].shape == (1000, 128)
    wrong = judge_images(judge, images, (labels + 1) % 10)
    assert wrong["class_accuracy"] < 0.1 and wrong["judge_confidence"] < right["judge_confidence"]


@pytest.mark.slow  # trains: out of the inner loop
@pytest.mark.parametrize("experiment", ["mnist_cnn", "fashion_cnn_strong"])
def test_judge_resume_continues_to_the_same_result(experiment, tmp_path):
    """fashion_cnn_strong (on digits here) adds batch norm, mirrored images and a cosine
    lr set from the epoch: a split run still retraces the straight one."""
    common = [f"experiment={experiment}", "data=mnist_5k", "device=cpu", "algo.batch_size=500",
              "model.channels=[8,16]", "model.hidden=32"]  # small: the recipe is what is tested
    classifier.train(compose(*common, "algo.epochs=1"), tmp_path / "split")
    resumed = classifier.train(
        compose(*common, "algo.epochs=2", f"resume={tmp_path / 'split'}"), tmp_path / "split")
    straight = classifier.train(compose(*common, "algo.epochs=2"), tmp_path / "straight")
    keys = ("epoch", "loss", "test_accuracy")
    assert [[h[k] for k in keys] for h in resumed["history"]] == \
        [[h[k] for k in keys] for h in straight["history"]]
    assert resumed["status"] == "finished" and len(resumed["history"]) == 2
    if experiment == "fashion_cnn_strong":  # the second of 2 epochs runs at half the lr
        last = torch.load(tmp_path / "split" / "checkpoints" / "last.pt", weights_only=False)
        assert last["state"]["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0005)
        assert any("running_mean" in k for k in last["state"]["model"])


def test_tiny_gan_run_logs_the_books_tags(gan_run):
    metrics = json.loads((gan_run / "metrics.json").read_text())
    assert metrics["steps"] == 3 and 0 <= metrics["best_class_accuracy"] <= 1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(gan_run)).Reload()
    assert {"dLoss", "gLoss", "d_realness", "d_class", "g_realness", "g_class",
            "judge/class_accuracy"} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("dLoss")) == 3 and "digits" in events.Tags()["images"]


def test_sharp_run_keeps_the_lowest_frechet_and_stops_on_its_time_budget(judge_run, tmp_path):
    common = ["experiment=acgan_sharp", "device=cpu", f"algo.judge={judge_run}",
              "algo.judge_per_class=10", "algo.batch_size=100", "algo.epoch_images=200",
              "algo.standing_stats_batches=2"]
    m = acgan.train(compose(*common, "algo.epochs=3"), tmp_path / "epochs")
    scores = [h["frechet_train"] for h in m["history"]]
    assert m["select"] == "frechet" and m["best_frechet_train"] == min(scores)
    kept = torch.load(tmp_path / "epochs" / "checkpoints" / "best.pt", weights_only=False)
    assert kept["meta"]["epoch"] == m["best_epoch"] == 1 + scores.index(min(scores))
    timed = acgan.train(compose(*common, "algo.epochs=1000", "algo.max_seconds=1"),
                        tmp_path / "timed")
    assert timed["status"] == "finished" and timed["epochs"] <= 2 and timed["steps"] < 20


@pytest.mark.parametrize("recipe", ["acgan_fast", "acgan_sharp"])
def test_recipe_split_and_resumed_retraces_the_straight_run(recipe, judge_run, tmp_path):
    """The named recipes carry more state than the book's (the generator's weight average,
    its warm-up, the Frechet-kept checkpoint): a run cut after one epoch and resumed ends
    where an uninterrupted one does."""
    common = [f"experiment={recipe}", "device=cpu", f"algo.judge={judge_run}",
              "algo.judge_per_class=5", "algo.batch_size=25", "algo.epoch_images=50",
              "algo.max_seconds=null", "algo.standing_stats_batches=2"]
    whole = acgan.train(compose(*common, "algo.epochs=2"), tmp_path / "whole")
    acgan.train(compose(*common, "algo.epochs=1"), tmp_path / "split")
    # the cut run's last.pt knows the best score so far, the one a resume must beat
    cut = torch.load(tmp_path / "split" / "checkpoints" / "last.pt", weights_only=False)["meta"]
    epoch_one = cut["history"][0]
    assert cut["best"] in (epoch_one.get("frechet_train"), epoch_one.get("class_accuracy"))
    resumed = acgan.train(compose(*common, "algo.epochs=2", f"resume={tmp_path / 'split'}"),
                          tmp_path / "split")
    timing = {"train_seconds", "seconds", "images_per_second", "steps_per_second"}

    def figures(metrics):
        return [{k: v for k, v in h.items() if k not in timing} for h in metrics["history"]]

    assert resumed["status"] == whole["status"] == "finished" and len(resumed["history"]) == 2
    assert figures(resumed) == figures(whole)
    for name in ("best", "last"):
        a, b = (torch.load(d / "checkpoints" / f"{name}.pt", weights_only=False)
                for d in (tmp_path / "whole", tmp_path / "split"))
        assert a["meta"]["epoch"] == b["meta"]["epoch"]
        for key in ("generator", "generator_raw", "discriminator"):
            if key in a["state"]:
                assert all(torch.equal(x, y) for x, y in
                           zip(a["state"][key].values(), b["state"][key].values(), strict=True))


def test_eval_prints_judged_scores(gan_run, judge_run):
    out = call_tool("rlgen-eval", f"run={gan_run}", f"judge={judge_run}", "per_class=20",
                  "device=cpu").stdout
    summary = json.loads(out)
    assert {"class_accuracy", "judge_confidence", "frechet_distance", "frechet_to_train",
            "frechet_floor_real_test_vs_train", "frechet_ratio",
            "closer_than_held_out_p1"} <= summary.keys()
    assert summary["generated"] == summary["frechet_sample"] == 200  # equal sizes a side
    assert summary["frechet_floor_real_test_vs_train"] < summary["frechet_distance"]
    # one epoch of a GAN copies nothing: its images are far from every training image
    assert summary["nearest_train_median_generated"] > summary["nearest_train_median_held_out"]
    payload = torch.load(gan_run / "checkpoints" / "best.pt", weights_only=False)
    full = acgan_tools.evaluate(payload, acgan_tools.EvalArgs(run=str(gan_run), judge=str(judge_run),
                                                  device="cpu"))
    assert full["generated"] == full["frechet_sample"] == 1000  # as many as held out
    wrong = call_tool("rlgen-eval", f"run={gan_run}", f"judge={gan_run}", check=False)
    assert "not a classifier" in error_line(wrong)
    with pytest.raises(UserError, match="trained on mnist_5k, these images are fashion_mnist"):
        classifier.load_judge(str(judge_run), torch.device("cpu"), "fashion_mnist")
    assert classifier.load_judge(str(judge_run), torch.device("cpu"), "mnist") is not None


def test_generate_writes_a_digit_grid(gan_run, tmp_path):
    out = tmp_path / "digits.png"
    call_tool("rlgen-generate", f"run={gan_run}", "digits=357", "n=4", f"out={out}")
    assert Image.open(out).size == (4 * 28, 3 * 28)
    bad = call_tool("rlgen-generate", f"run={gan_run}", "digits=3a", f"out={out}", check=False)
    assert "digits='3a'" in error_line(bad)


def test_digit_viewer_headless(gan_run, tmp_path):
    shot = tmp_path / "viewer.png"
    out = call_tool("rlgen-watch", f"run={gan_run}", "frames=2", f"record={shot}").stdout
    assert "showed 2 frames" in out and shot.exists()


def test_digit_viewer_keys_pick_resample_and_nudge():
    import pygame

    from generative.digit_viewer import view_digits

    class Args:
        frames, record, fps = 3, None, 1000

    def key(k):
        return pygame.event.Event(pygame.KEYDOWN, key=k, mod=0, unicode="")

    pygame.display.init()
    script = [[key(pygame.K_7), key(pygame.K_DOWN), key(pygame.K_RIGHT)], [key(pygame.K_SPACE)]]
    original = pygame.event.get
    pygame.event.get = lambda: script.pop(0) if script else []
    seen = []
    try:
        result = view_digits(lambda z: seen.append(z.clone()) or torch.zeros(10, 28, 28),
                             torch.zeros(10, 28, 28), 100, torch.Generator().manual_seed(0), Args)
    finally:
        pygame.event.get = original
    assert result["digit"] == 7 and result["dim"] == 1 and result["resamples"] == 1
    drawn = torch.rand(1, 100, generator=torch.Generator().manual_seed(0)) * 2 - 1
    nudged = drawn.clone()
    nudged[0, 1] = min(1.0, drawn[0, 1].item() + 0.1)  # right arrow: +0.1 on dimension 1
    torch.testing.assert_close(seen[0], nudged)  # and nothing else moved
    assert not torch.equal(seen[0], seen[1])  # space drew a new z


def test_moving_average_of_generator_weights():
    gen, _ = nets()
    average = acgan_nets.Generator(100)
    before = average.dense.weight.clone()
    gen.up[2].running_mean.fill_(0.5)
    acgan.update_average(average, gen, 0.9)
    torch.testing.assert_close(average.dense.weight, 0.9 * before + 0.1 * gen.dense.weight)
    assert torch.all(average.up[2].running_mean == 0.5)  # statistics are copied, not averaged
