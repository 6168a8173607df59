"""Retraining cycles: a lineage's champion retrained on newly arrived prompts, gated against
itself, promoted or rejected (DESIGN.md §10, docs/retrain.md). ``stages`` holds the cycle;
``cycle`` its records, ``incoming`` the prompt files, ``prompt_set`` their pass rates,
``gate`` the paired comparison. The Prefect flow is flows/retrain.py."""
