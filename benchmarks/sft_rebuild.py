"""Is the shipped SFT policy what the recipe builds here? Rebuild it from scratch and compare.

The tiny configs start from the policy committed under oreal_core/models/shipped/ (docs/
rollout.md, "SFT warm-up"): its key covers the recipe's settings and source, so a changed
recipe is never matched to it. What the key cannot see is the machine and the libraries
(torch's kernels, its thread count): this study trains the policy once, without the shipped
copy, and prints the seconds the warm-up costs and whether the weights are the shipped ones
bit for bit, or else how far they are (steps, held-out pass@1, largest weight difference).

    .venv/bin/python benchmarks/sft_rebuild.py [--config tiny-cpu]     # ~2 min idle, 2 cores
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny-cpu")
    args = parser.parse_args()
    import torch
    from safetensors.torch import load_file

    from oreal_core.config import load_config
    from oreal_core.models.sft import REPORT_FILE, run_sft, sft_cache_key
    from oreal_core.models.shipped import shipped_policy, weights_digest

    cfg = load_config(args.config, [f"sft.cache_dir={tempfile.mkdtemp(prefix='sft-rebuild-')}"])
    shipped = shipped_policy(f"tiny-{sft_cache_key(cfg)}")
    if shipped is None:
        raise SystemExit(f"no shipped policy for {args.config}'s key: `oreal sft --config {args.config} --ship` first")
    start = time.perf_counter()
    built = run_sft(cfg, use_shipped=False)
    wall_s = time.perf_counter() - start
    ours, theirs = Path(built.policy_dir), shipped
    saved = json.loads((theirs / REPORT_FILE).read_text())
    a, b = load_file(str(ours / "model.safetensors")), load_file(str(theirs / "model.safetensors"))
    max_delta = max(float((a[k] - b[k]).abs().max()) for k in a)
    out = {"config": args.config, "wall_s": round(wall_s, 1), "threads": torch.get_num_threads(),
           "bit_identical": weights_digest(ours) == weights_digest(theirs), "max_weight_delta": max_delta,
           "steps": [built.steps, saved["steps"]], "heldout_pass1": [built.heldout_pass1, saved["heldout_pass1"]]}
    print(f"rebuilt in {wall_s:.0f} s on {out['threads']} threads: "
          f"{'bit-identical to' if out['bit_identical'] else 'differs from'} the shipped policy "
          f"(max |delta w| {max_delta:.3g}); steps {built.steps} vs {saved['steps']}, "
          f"held-out pass@1 {built.heldout_pass1:.3f} vs {saved['heldout_pass1']:.3f}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
