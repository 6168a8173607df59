"""The training stage: DeepSpeed engines for the actor and the token-level RM, the frozen
reference, one OREAL step per RL iteration, and checkpoints (docs/training.md)."""

from oreal_core.train.results import (
    CheckpointMismatchError,
    MicroBatchOutOfMemoryError,
    StepStatus,
    TokenRMRecord,
    TrainStepResult,
)

__all__ = [
    "CheckpointMismatchError",
    "MicroBatchOutOfMemoryError",
    "StepStatus",
    "TokenRMRecord",
    "TrainStepResult",
]
