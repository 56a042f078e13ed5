"""Learning curve of the CPU demonstration: plotly HTML + matplotlib PNG, and numbers.md.

    python training/results/cpu_demo/make_figures.py [runs/lfw_dlib_cpu_demo [OUT]]

Reads the run's log.jsonl and summary.json, copies them to OUT (default: beside this script;
small files only) and writes learning_curve.html, learning_curve.png and final_numbers.md
there, with the held-out accuracy at every validation step.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(run: Path, out: Path = HERE) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in ("log.jsonl", "summary.json", "config.toml"):
        if (run / name).exists():
            shutil.copy(run / name, out / name)
    recs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    train = [r for r in recs if r["type"] == "train"]
    steps = [r["step"] for r in train]

    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, subplot_titles=("total loss", "L_id (CosFace)",
                                                         "L_cos (MSE to teacher cosine)"))
    for col, key in enumerate(("loss", "l_id", "l_cos"), 1):
        fig.add_trace(go.Scatter(x=steps, y=[r[key] for r in train], name=key,
                                 mode="lines+markers"), row=1, col=col)
        fig.update_xaxes(title_text="optimiser step (16 pairs)", row=1, col=col)
    fig.update_layout(title="xCos paper recipe on CPU: dlib teacher, LFW folds 2-9 (>=5 "
                            "images/person)", height=380, width=1200, showlegend=False)
    fig.write_html(out / "learning_curve.html", include_plotlyjs="cdn")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for ax, key in zip(axes, ("loss", "l_id", "l_cos")):
        ax.plot(steps, [r[key] for r in train], marker=".")
        ax.set_title(key)
        ax.set_xlabel("optimiser step (16 pairs)")
        ax.grid(alpha=0.3)
    f.tight_layout()
    f.savefig(out / "learning_curve.png", dpi=90)

    summary = json.loads((out / "summary.json").read_text())
    lines = ["| held-out set | scorer | 10-fold accuracy | std | AUC | mean threshold |",
             "|---|---|---|---|---|---|"]
    for name, res in (summary.get("val") or {}).items():
        for scorer, r in res.items():
            if isinstance(r, dict):
                lines.append(f"| {name} ({res['pairs']} pairs) | {scorer} | "
                             f"{100 * r['acc']:.2f} % | {100 * r['std']:.2f} | "
                             f"{r['auc']:.4f} | {r['threshold']:.3f} |")
        if "pearson_xcos_teacher" in res:
            lines.append(f"\nPearson r(xCos, teacher cosine) on {name}: "
                         f"{res['pearson_xcos_teacher']:.3f}")
    vals = [r for r in recs if r["type"] == "val"]
    if vals:
        sets = [k for k, v in vals[0].items() if isinstance(v, dict)]
        lines += ["", "| step | " + " | ".join(f"{n}: {k}" for n in sets
                                              for k in ("xcos", "id_cosine", "teacher_cosine"))
                  + " | Pearson r(xCos, teacher) |",
                  "|---:|" + "---:|" * (3 * len(sets) + 1)]
        for r in vals:
            lines.append(f"| {r['step']} | " + " | ".join(
                f"{100 * r[n][k]['acc']:.2f}" for n in sets
                for k in ("xcos", "id_cosine", "teacher_cosine"))
                + f" | {r[sets[0]].get('pearson_xcos_teacher', float('nan')):.3f} |")
    first, last = train[:3], train[-3:]
    mean = lambda rs, k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
    lines += ["", f"Training: {summary['steps']} steps ({summary['epochs']:.2f} epochs) on "
              f"{summary['images']} images of {summary['identities']} people.",
              f"Mean of the first 3 / last 3 logged points: loss {mean(first, 'loss'):.3f} -> "
              f"{mean(last, 'loss'):.3f}; L_id {mean(first, 'l_id'):.3f} -> "
              f"{mean(last, 'l_id'):.3f}; L_cos {mean(first, 'l_cos'):.4f} -> "
              f"{mean(last, 'l_cos'):.4f}.",
              f"Throughput (last point): {train[-1]['pairs_per_s']:.2f} pairs/s; "
              f"wall time {summary['wall_s'] / 60:.1f} min."]
    (out / "final_numbers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/lfw_dlib_cpu_demo"),
         *(Path(a) for a in sys.argv[2:3]))
