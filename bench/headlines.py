"""The README's headline rows, written from the results files by `python -m
bench.docs_tables` (table `headlines`): each row's value and command are read from the
file it links, so a re-measured figure reaches the README only through its bench."""

LINK = "[{0}](bench/results/{0})"


def row(figure: str, value: str, command: str, file: str) -> str:
    return f"| {figure} | {value} | `{command}` | {LINK.format(file)} |"


def measured_at(results: dict) -> str:
    """A results file whose commit came from git history (bench.provenance) says so in its
    rows: the figure was measured at that commit, not on the current code."""
    if "commit_source" not in results:
        return ""
    return f"; measured at commit {results['commit']}, not re-measured since"


def cartpole_book(same: dict) -> str:
    after = same["cartpole_reinforce_first_475_seeds_0_4"]["after"]
    cpu = same["machine"].split(" (")[0].removesuffix(" Processor").replace("(R)", "")
    return row("`cartpole_reinforce` (the book's recipe), seeds 0-4: first iteration with mean "
               "steps >= 475", f"{', '.join(map(str, after))} on the CPU {cpu} "
               f"(the first iterations differ between CPUs; book: about 20){measured_at(same)}",
               same["command"], "same_figures.json")


def snake_strong(snake: dict) -> str:
    rows = sorted((r for r in snake["trained"] if r["experiment"] == "snake_dqn_strong"
                   and not r["overrides"]), key=lambda r: r["seed"])
    commands = sorted({r.get("command", "python -m bench.snake --train snake_dqn_strong")
                       for r in rows})
    value = (", ".join(f"{r['fresh_greedy_mean_fruits']:g}" for r in rows)
             + " (target 35 on every seed; the book's agent: about 18)")
    return row(f"`snake_dqn_strong`, 9x9, seeds {', '.join(str(r['seed']) for r in rows)}, "
               "30 minutes each alone on 2 cores: greedy fruits a game, 100 fresh games",
               value, "`; `".join(commands), "snake.json")


def zoo_cartpole(zoo: dict) -> str:
    def per_seed(experiment: str) -> tuple[str, str]:
        found = next(s for s in zoo["summary"] if s["experiment"] == experiment)
        command = next((r["command"] for r in zoo["runs"] if r["experiment"] == experiment
                        and "command" in r), zoo["commands"][0])
        return ", ".join(f"{v:g}" for v in found["rlgen_per_seed"]), command

    faithful, command = per_seed("cartpole_v1_dqn")
    sb3 = next(s for s in zoo["summary"] if s["experiment"] == "cartpole_v1_dqn")["sb3_per_seed"]
    variant, variant_command = per_seed("cartpole_v1_dqn_fast")
    commands = [command] + ([variant_command] if variant_command != command else [])
    return row("`cartpole_v1_dqn` (RL Zoo's DQN settings, 50k steps, final model), seeds 0-2: "
               "greedy return over 100 episodes; `cartpole_v1_dqn_fast` (the same settings "
               "and rlgen's options, stopped at its first perfect 100-game evaluation)",
               f"{faithful} (RL Zoo: 500; SB3 given the same settings, same run: "
               f"{', '.join(f'{v:g}' for v in sb3)}); `_fast`: {variant}",
               "`; `".join(commands), "zoo.json")


def text_small(nanogpt: dict) -> str:
    ours = next(r for r in nanogpt["rows"] if r["model"] == "rlgen lstm_text_small")
    peer = next(r for r in nanogpt["rows"] if r["model"] == "nanoGPT README CPU settings")
    return row(f"`lstm_text_small`, tiny Shakespeare, nanoGPT's split, {nanogpt['minutes']:g} "
               "minutes on 2 cores: validation loss by nanoGPT's estimate / over the whole "
               "split" + (", the epoch kept by a selection text carved from the training text"
                          if ours.get("kept_by") == "selection text" else ""),
               f"{ours['val_loss_nanogpt_estimate']} / {ours['val_loss_full_context']} "
               f"nats/char (nanoGPT at its README's CPU settings, same run: "
               f"{peer['val_loss_nanogpt_estimate']} / {peer['val_loss_full_context']})",
               nanogpt["command"], "nanogpt.json")


def vae_book(generative: dict) -> str:
    job = generative["jobs"]["vae_fashion_mnist"]
    return row(f"`vae` (the book's recipe), Fashion-MNIST, {job['epochs']} epochs: train / "
               "held-out loss", f"{job['train_loss_last_epoch']} / {job['test_loss']} (the "
               f"original: 40-50){measured_at(generative)}", job["command"],
               "generative.json")


def acgan_sharp(generative: dict) -> str:
    job = generative["jobs"]["acgan_sharp_mnist5k_seed0"]
    return row("`acgan_sharp`, mnist_5k, seed 0, 20 minutes: judged class accuracy; Frechet "
               "distance over the real-vs-real floor",
               f"{job['class_accuracy']:.1%}; {job['frechet_ratio']}x{measured_at(generative)}",
               job["command"],
               "generative.json")


def readme_rows(results: dict) -> str:
    lines = ["| figure | value | command | results |", "| --- | --- | --- | --- |",
             cartpole_book(results["same_figures.json"]), snake_strong(results["snake.json"]),
             zoo_cartpole(results["zoo.json"]), text_small(results["nanogpt.json"]),
             vae_book(results["generative.json"]), acgan_sharp(results["generative.json"])]
    return "\n".join(lines)
