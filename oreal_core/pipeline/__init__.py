"""One RL iteration as stages over the lake, without Prefect: the flows call these.

Each stage reads the previous stage's committed artefact, does its work through the
library (rollout engines, verifier, algorithm core, trainer) and commits its own; a stage
whose artefact is already committed is skipped, which is what makes a killed run resume
where it stopped.
"""
