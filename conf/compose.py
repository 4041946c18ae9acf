"""Where the config tree lives, its resolvers, and composing it outside `rlgen-train`
(validation, playing an env by hand, benches and tests compose the same tree)."""

from datetime import datetime
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parent


def register_resolvers() -> None:
    import conf.schemas

    conf.schemas.register()
    if not OmegaConf.has_resolver("rlgen_run_dir"):
        OmegaConf.register_new_resolver(
            "rlgen_run_dir", lambda resume, default: resume if resume else default)
    if not OmegaConf.has_resolver("rlgen_hydra_subdir"):
        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        OmegaConf.register_new_resolver(
            "rlgen_hydra_subdir", lambda resume: f".hydra-resume-{stamp}" if resume else ".hydra")


def compose(overrides: list[str], job_name: str = "train",
            return_hydra_config: bool = False) -> DictConfig:
    """The run config that `rlgen-train` would build from these overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name=job_name):
        return hydra_compose(config_name="config", overrides=list(overrides),
                             return_hydra_config=return_hydra_config)
