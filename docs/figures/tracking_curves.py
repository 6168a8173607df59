"""docs/figures/tracking-demo.png: a run's curves as TensorBoard holds them.

Reads the run's event files with TensorBoard's own reader (EventAccumulator), the data its
UI plots, and draws the scalars docs/tracking.md shows. This machine has no browser to take
a screenshot of the UI itself.

    .venv/bin/python docs/figures/tracking_curves.py LOGDIR/RUN_ID [--out docs/figures/tracking-demo.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

PANELS = ("critic/score/mean", "actor/pg_loss", "actor/kl_loss", "actor/entropy", "response_length/mean",
          "actor/grad_norm", "timing_s/rollout", "val/synthetic/pass@1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="the run's TensorBoard folder: <tracking dir>/tensorboard/<run id>")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("tracking-demo.png"))
    args = parser.parse_args()
    events = EventAccumulator(str(args.run_dir), size_guidance={"scalars": 0})
    events.Reload()
    names = [n for n in PANELS if n in events.Tags()["scalars"]]
    fig, axes = plt.subplots(2, (len(names) + 1) // 2, figsize=(4 * ((len(names) + 1) // 2), 6), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        points = events.Scalars(name)
        ax.plot([p.step for p in points], [p.value for p in points], marker="o" if len(points) < 8 else None)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(f"TensorBoard scalars of run {args.run_dir.name} (read with EventAccumulator)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(args.out, names)


if __name__ == "__main__":
    main()
