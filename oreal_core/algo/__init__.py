"""The OREAL algorithm as pure functions over tensors: no I/O, no models, no config files.

Shape legend used in every module: P prompts, K samples per prompt, B samples in a batch,
T tokens per sample (padded; a bool ``mask`` marks real response tokens).
"""
