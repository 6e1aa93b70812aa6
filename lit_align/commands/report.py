"""A run's report as one self-contained HTML page (``lit-align report RUN_DIR``).

Curves of the logged metrics (inline SVG, every point also in the chart's ``data-points`` attribute), sample
generations over time from ``samples.jsonl``, the failure-mode monitors' alarms (``monitors.jsonl``) and the resolved
config of the latest run into the folder. No plotting library is needed.
"""

from __future__ import annotations

import csv
import html
import json
import math
import sys
from pathlib import Path
from typing import Any

from jsonargparse import auto_cli

from lit_align.domains import PositiveInt, check_args
from lit_align.errors import LitAlignError
from lit_align.runtime.monitors.base import ALARMS_FILE

CHARTS = (
    ("loss", ("loss",)),
    ("rewards", ("reward", "rewards/chosen", "rewards/rejected")),
    ("margins", ("rewards/margins", "margin")),
    ("accuracy", ("rewards/accuracies", "accuracy", "win_rate", "tie_rate")),
    ("KL to the reference", ("kl",)),
    ("completion length", ("completions/mean_length", "lengths/chosen", "lengths/rejected")),
    ("distinct-2", ("distinct_2",)),
    ("reward spread", ("reward_std", "frac_reward_zero_std")),
    ("learning rate", ("lr",)),
)
"""Charts of the page: a title and the metric names it draws, each under ``train/`` and ``val/`` where logged."""
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def read_metrics(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every logged metric of every run into the folder (``logs/version_N/metrics.csv``) as (step, value) points.

    A resumed run writes a new version; for a step logged by several, the latest version wins.
    """
    series: dict[str, dict[int, float]] = {}
    files = sorted(run_dir.glob("logs/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[-1]))
    for path in files:
        with path.open() as f:
            for row in csv.DictReader(f):
                step = int(float(row.get("step") or 0))
                for name, value in row.items():
                    if name in ("step", "epoch") or value in ("", None):
                        continue
                    try:
                        series.setdefault(name, {})[step] = float(value)
                    except ValueError:
                        continue
    return {name: sorted(points.items()) for name, points in series.items()}


def svg_chart(title: str, lines: dict[str, list[tuple[int, float]]], width: int = 560, height: int = 220) -> str:
    """One line chart as inline SVG; each line's points are also in its ``data-points`` attribute (JSON)."""
    points = [p for line in lines.values() for p in line if math.isfinite(p[1])]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    left, right, top, bottom = 60, 10, 24, 30

    def at(x: float, y: float) -> str:
        px = left + (x - x0) / (x1 - x0) * (width - left - right)
        py = top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom)
        return f"{px:.1f},{py:.1f}"

    parts = [
        f'<svg class="chart" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{left}" y="16" font-weight="bold">{html.escape(title)}</text>',
        f'<text x="4" y="{top + 10}" font-size="11">{y1:.4g}</text>',
        f'<text x="4" y="{height - bottom}" font-size="11">{y0:.4g}</text>',
        f'<text x="{left}" y="{height - 8}" font-size="11">step {x0}</text>',
        f'<text x="{width - right - 70}" y="{height - 8}" font-size="11">step {x1}</text>',
        f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" fill="none" '
        'stroke="#ccc"/>',
    ]
    for i, (name, line) in enumerate(lines.items()):
        colour = COLOURS[i % len(COLOURS)]
        finite = [(x, y) for x, y in line if math.isfinite(y)]
        data = html.escape(json.dumps([[x, y] for x, y in line]))
        if len(finite) > 1:
            shape = f'<polyline points="{" ".join(at(x, y) for x, y in finite)}" fill="none"'
        else:  # one point (or none drawable): a dot
            cx, cy = at(*finite[0]).split(",") if finite else (str(left), str(top))
            shape = f'<circle r="3" cx="{cx}" cy="{cy}" fill="{colour}"'
        parts.append(
            f'{shape} stroke="{colour}" stroke-width="1.5" data-metric="{html.escape(name)}" data-points="{data}"/>'
        )
        parts.append(
            f'<text x="{width - right - 150}" y="{top + 14 + 14 * i}" font-size="11" fill="{colour}">'
            f"{html.escape(name)}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a pre-emption
    return rows


def _text(value: Any) -> str:
    if isinstance(value, list):
        return " | ".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in value if isinstance(m, dict))
    return str(value)


def _samples_table(samples: list[dict[str, Any]], per_step: int, max_steps: int) -> str:
    steps = sorted({s.get("step", 0) for s in samples})
    if len(steps) > max_steps:  # evenly spaced steps, first and last included
        steps = [steps[round(i * (len(steps) - 1) / (max_steps - 1))] for i in range(max_steps)]
    shown = set(steps)
    rows, counts = [], dict.fromkeys(steps, 0)
    for s in samples:
        step = s.get("step", 0)
        if step in shown and counts[step] < per_step:
            counts[step] += 1
            reward = s.get("reward")
            rows.append(
                f"<tr><td>{step}</td><td>{html.escape(_text(s.get('prompt', '')))}</td>"
                f"<td>{html.escape(_text(s.get('completion', '')))}</td>"
                f"<td>{'' if reward is None else f'{reward:.4g}'}</td></tr>"
            )
    head = "<tr><th>step</th><th>prompt</th><th>completion</th><th>reward</th></tr>"
    return f'<table class="samples">{head}{"".join(rows)}</table>'


def report(
    run_dir: str, output: str | None = None, samples_per_step: PositiveInt = 4, sample_steps: PositiveInt = 8
) -> str:
    """Write a run folder's report (one self-contained HTML file) and print its path.

    Args:
        run_dir: A run's ``trainer.default_root_dir`` (e.g. ``runs/grpo``).
        output: The HTML file; defaults to ``<run_dir>/report.html``.
        samples_per_step: Sample generations shown per logged step.
        sample_steps: Logged steps of ``samples.jsonl`` shown (evenly spaced, first and last included).

    """
    check_args(report, locals(), "--")
    folder = Path(run_dir)
    metrics = read_metrics(folder)
    if not metrics:
        raise LitAlignError(f"run_dir: '{run_dir}' holds no logs/version_*/metrics.csv (is it a run folder?)")
    sections = [f"<h1>lit-align run report: {html.escape(str(folder))}</h1>"]
    alarms = _jsonl(folder / ALARMS_FILE)
    items = "".join(
        f"<li><b>{html.escape(a.get('monitor', ''))}</b> at step {a.get('step')}: {html.escape(a.get('message', ''))}"
        "</li>"
        for a in alarms
    )
    sections.append(f'<h2>Monitor warnings</h2><ul class="alarms">{items or "<li>none</li>"}</ul>')
    charts = []
    for title, names in CHARTS:
        lines = {f"{stage}/{n}": metrics[f"{stage}/{n}"] for n in names for stage in ("train", "val")
                 if f"{stage}/{n}" in metrics}  # fmt: skip
        if lines:
            charts.append(svg_chart(title, lines))
    sections.append("<h2>Curves</h2>" + "\n".join(charts))
    samples = _jsonl(folder / "samples.jsonl")
    if samples:
        sections.append("<h2>Sample generations</h2>" + _samples_table(samples, samples_per_step, sample_steps))
    configs = sorted(folder.glob("logs/version_*/config.yaml"), key=lambda p: int(p.parent.name.split("_")[-1]))
    if configs:
        sections.append(
            f"<h2>Config ({html.escape(str(configs[-1]))})</h2><pre>{html.escape(configs[-1].read_text())}</pre>"
        )
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:auto}svg.chart{margin:4px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px;text-align:left}"
        "pre{background:#f6f6f6;padding:8px;font-size:12px}"
    )
    page = f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>lit-align report</title><style>{style}</style>'
    page += f"</head><body>{''.join(sections)}</body></html>\n"
    out = Path(output) if output else folder / "report.html"
    out.write_text(page)
    print(out)
    return str(out)


def report_cli(args: list[str] | None = None) -> None:
    """``lit-align report --help``."""
    auto_cli(report, args=sys.argv[2:] if args is None else args, prog="lit-align report", exit_on_error=False)
