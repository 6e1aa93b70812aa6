"""``lit-align report``: a finished GRPO run's page shows the logged values, its samples and its config."""

import csv
import json
import re
from html.parser import HTMLParser

from lit_align.commands.report import read_metrics
from tests.helpers import REPO, run_in_process

SMALL = ["--data.init_args.source.num_rows", "32", "--data.init_args.source.num_val_rows", "4"]
SMALL += ["--data.init_args.batch_size", "4", "--trainer.max_steps", "6", "--trainer.val_check_interval", "3"]
SMALL += ["--model.init_args.completions_per_prompt", "4", "--model.init_args.sampling.max_new_tokens", "4"]
SMALL += ["--model.init_args.log_samples_every_n_steps", "2", "--trainer.log_every_n_steps", "1"]


class Charts(HTMLParser):
    """Every drawn line's metric and points, read back from the page."""

    def __init__(self):
        super().__init__()
        self.lines = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "data-metric" in attrs:
            self.lines[attrs["data-metric"]] = json.loads(attrs["data-points"])


def test_a_grpo_run_report_shows_its_logged_values(tmp_path):
    run = tmp_path / "grpo"
    fit = run_in_process("fit", "--config", str(REPO / "recipes" / "grpo.yaml"), *SMALL,
                         "--trainer.default_root_dir", str(run))  # fmt: skip
    assert fit.code == 0, fit.stderr[-2000:]
    made = run_in_process("report", str(run))
    assert made.code == 0, made.stderr[-2000:]
    page = (run / "report.html").read_text()
    charts = Charts()
    charts.feed(page)
    with open(next(run.glob("logs/version_*/metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    for name in ("train/reward", "train/loss", "val/reward", "train/distinct_2", "train/completions/mean_length"):
        logged = [[int(r["step"]), float(r[name])] for r in rows if r.get(name)]
        assert logged and charts.lines[name] == logged, name
    # The sample table holds samples.jsonl's completions; the config section the resolved config.
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert all(f"<td>{s['step']}</td>" in page for s in samples)
    assert "lit_align.objectives.GRPO" in page and "<h2>Monitor warnings</h2>" in page
    assert re.search(r"<li>none</li>", page)


def test_a_resumed_run_keeps_the_latest_value_of_each_step(tmp_path):
    for version, rows in ((0, [(1, "0.5"), (2, "0.6")]), (1, [(2, "0.7"), (3, "0.8")])):
        folder = tmp_path / "logs" / f"version_{version}"
        folder.mkdir(parents=True)
        (folder / "metrics.csv").write_text("step,train/loss\n" + "".join(f"{s},{v}\n" for s, v in rows))
    assert read_metrics(tmp_path) == {"train/loss": [(1, 0.5), (2, 0.7), (3, 0.8)]}


def test_a_folder_without_logs_is_one_line(tmp_path):
    made = run_in_process("report", str(tmp_path))
    assert made.code == 2 and "holds no logs/version_*/metrics.csv" in made.stderr.strip().splitlines()[-1]
