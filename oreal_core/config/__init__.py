"""One typed configuration tree for a whole OREAL run.

``schema`` holds the tree (frozen dataclasses with their range checks), ``loading`` turns
YAML files and dotted overrides (``--set loss.kl_coef=0.02``) into it. Validation happens
at load time: an unknown key, a wrong type or an out-of-range value is a
:class:`ConfigError` naming the field and the bad value, never a surprise three hours into
a run.
"""

from oreal_core.config.loading import (
    CONFIG_DIR,
    DEFAULT_CONFIG,
    apply_override,
    from_dict,
    load_config,
    resolve_config_path,
)
from oreal_core.config.schema import (
    ActorConfig,
    AlgoConfig,
    ConfigError,
    DataConfig,
    EvalConfig,
    JudgeConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    OrealConfig,
    RolloutConfig,
    RunConfig,
    SFTConfig,
    StoreConfig,
    SyntheticTaskConfig,
    TokenRMConfig,
    TrainConfig,
    VerifierConfig,
)

__all__ = [
    "CONFIG_DIR", "DEFAULT_CONFIG", "ActorConfig", "AlgoConfig", "ConfigError", "DataConfig", "EvalConfig",
    "JudgeConfig", "LossConfig", "ModelConfig", "OptimConfig", "OrealConfig", "RolloutConfig", "RunConfig",
    "SFTConfig", "StoreConfig", "SyntheticTaskConfig", "TokenRMConfig", "TrainConfig", "VerifierConfig",
    "apply_override", "from_dict", "load_config", "resolve_config_path",
]
