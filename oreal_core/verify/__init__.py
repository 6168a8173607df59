"""Verification: answer extraction, rule check (math-verify), verdict cache, LLM judge client.

Entry points: :func:`oreal_core.verify.rule.check` (one sample, rule only) and
:class:`oreal_core.verify.verifier.Verifier` (the verify stage's batch entry).
"""
