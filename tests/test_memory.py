"""Sizes from the command line that do not fit in memory are refused in one line, naming
what needs how much and the limit, before the refusing process allocates them: under
the host's memory, an address-space cap (ulimit -v) and a cgroup's memory.max (read from
files the test provides)."""

import os
import re
import resource
import subprocess
import sys

import pytest
import torch
from conftest import BIN

from nn import memory
from nn.blocks import MLP

# runs a command and prints the peak resident memory of it alone (KiB), so the figure is
# not that of an earlier child of the test process
PEAK = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], capture_output="
        "True, text=True); sys.stderr.write(done.stderr); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(done.returncode)")


def refused(args, tmp_path, address_space: int | None = None, env: dict | None = None) -> str:
    """rlgen-train's one-line refusal; the refusing process stayed under 1 GiB and made
    no run folder."""
    cap = (lambda: resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))) \
        if address_space else None
    done = subprocess.run([sys.executable, "-c", PEAK, str(BIN / "rlgen-train"), *args,
                           f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True,
                          env=dict(os.environ, SDL_VIDEODRIVER="dummy", **(env or {})),
                          preexec_fn=cap, timeout=120)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert int(done.stdout.split()[-1]) < 2**20  # KiB: under 1 GiB at its peak
    assert not (tmp_path / "run").exists()
    return lines[0]


@pytest.mark.parametrize("args,needs", [
    (["experiment=snake_dqn", "env.height=100000", "env.width=100000"],
     r"a 100000x100000 Snake board needs [\d.]+ GiB"),
    (["experiment=cartpole_reinforce", "model.hidden_sizes=[2000000000]"],
     r"the network MLP with 12,000,000,001 parameters .* needs 178\.8 GiB"),
    (["experiment=snake_dqn", "algo.num_envs=1000000", "env.height=30", "env.width=30"],
     r"the Q network's forward pass over the games \(1000000 at once\) needs [\d.]+ GiB"),
], ids=["board", "network", "games-at-once"])
def test_sizes_over_the_hosts_memory_are_refused_in_one_line(args, needs, tmp_path):
    line = refused(args, tmp_path)
    assert re.search(needs + r", over 80% of the [\d.]+ GiB available memory: ", line), line
    assert "model=mlp" not in line  # no hint about something else


@pytest.mark.parametrize("args,needs", [
    (["experiment=snake_dqn", "env.height=3000", "env.width=3000"],
     "a 3000x3000 Snake board needs 4.7 GiB"),
], ids=["board"])
def test_an_address_space_cap_is_the_limit_it_is_under(args, needs, tmp_path):
    line = refused(args, tmp_path, address_space=5 * 2**30)
    assert needs in line and "left under the address-space limit (ulimit -v): " in line


@pytest.mark.parametrize("kind", ["dataset", "network"])
def test_a_cgroup_limit_read_from_its_files_refuses_what_exceeds_it(kind, tmp_path):
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text(f"{300 * 2**20}\n")
    (cgroup / "memory.current").write_text(f"{100 * 2**20}\n")
    corpus = tmp_path / "corpus.txt"
    if kind == "dataset":
        corpus.write_text("To be, or not to be, that is the question.\n" * 400_000)  # 17.2 MB
    args = {"dataset": ["experiment=lstm_text_fast", f"data.path={corpus}"],
            "board": ["experiment=snake_dqn", "env.height=3000", "env.width=3000"],
            "network": ["experiment=cartpole_reinforce", "model.hidden_sizes=[2000000000]"]}[kind]
    line = refused(args, tmp_path, env={"RLGEN_CGROUP_DIR": str(cgroup)})
    assert "over 80% of the 0.2 GiB left under the cgroup's memory.max: " in line
    if kind == "dataset":
        assert f"the text {corpus} (17,200,000 bytes" in line and "train on a smaller" in line


def test_the_limit_is_the_least_of_memory_cgroup_and_address_space(tmp_path, monkeypatch):
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text("max\n")  # no limit
    monkeypatch.setenv("RLGEN_CGROUP_DIR", str(cgroup))
    assert [what for _, what in memory.host_limits()] == ["available memory"] or \
        resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY
    (cgroup / "memory.max").write_text(f"{2**30}\n")
    (cgroup / "memory.current").write_text(f"{2**28}\n")
    assert memory.usable("cpu") == (3 * 2**28, "left under the cgroup's memory.max")
    memory.check_fits("x", int(0.8 * 3 * 2**28), "knob")
    with pytest.raises(memory.OverMemory, match=r"^y needs 0\.6 GiB, over 80% of the 0\.8 GiB "
                       r"left under the cgroup's memory.max: knob$"):
        memory.check_fits("y", int(0.8 * 3 * 2**28) + 1, "knob")


def test_a_network_is_sized_on_the_meta_device_and_built_for_real_when_it_fits():
    from omegaconf import OmegaConf

    node = OmegaConf.create({"_target_": "nn.blocks.MLP", "hidden_sizes": [8]})
    built = memory.build_network(node, in_shape=[4], out_features=2)
    assert isinstance(built, MLP) and next(built.parameters()).device.type == "cpu"
    with torch.device("meta"):
        probe = MLP(in_shape=[4], out_features=2, hidden_sizes=[8])
    # 4*8+8 + 8*2+2 weights: 58 floats, 232 bytes; a batch of 10: outputs of 8, 8, 2
    assert sum(p.numel() for p in probe.parameters()) == 58
    assert memory.activation_bytes(probe, [4], torch.float32, 10) >= 10 * (8 + 2) * 4
