"""The report page: a markdown file with the family table, the environment, the figures and a study's front.

:func:`write_report` writes, under ``out_dir``: ``README.md`` (the page), ``family.csv`` (the family
table, exact counts), ``records.json`` (the profile records the page was built from), ``figures/*.pdf|png``
and, for a study, ``study_trials.csv``.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from escale.errors import EscaleError
from escale.report import plots
from escale.report import study as study_mod
from escale.report.style import save_figure
from escale.report.tables import environments, family_table, has_latency, save_records

Column = tuple[str, str, Callable[[Any], str]]


def _num(spec: str, suffix: str = "") -> Callable[[Any], str]:
    def f(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "–"
        text = f"{v:{spec}}"
        return (text.replace("-", "+", 1) if text.lstrip("-+").strip("0.") == "" else text) + suffix
    return f


def _text(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def markdown_table(frame, columns: Sequence[Column]) -> str:
    """A GitHub-flavoured markdown table of ``frame`` with (column, header, formatter) triples."""
    cols = [c for c in columns if c[0] in frame]
    right = [c[0] not in ("name", "block", "levels", "miou_source", "paper_source", "preset", "accuracy", "device", "backend", "precision",
                          "latency_input_size") for c in cols]
    lines = ["| " + " | ".join(h for _, h, _ in cols) + " |",
             "|" + "|".join("---:" if r else ":---" for r in right) + "|"]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(fmt(row[c]) for c, _, fmt in cols) + " |")
    return "\n".join(lines)


FAMILY_MD = [
    ("name", "model", _text), ("width", "width", _num("g")), ("depth", "depth", _num("g")),
    ("block", "block", _text), ("channels", "BiFPN ch", _num("d")), ("repeats", "repeats", _num("d")),
    ("levels", "levels", _text), ("params_m", "params (M)", _num(".2f")), ("gmacs", "FLOPs (B)", _num(".1f")),
    ("paper_params_m", "paper params (M)", _num(".1f")), ("paper_gmacs", "paper FLOPs (B)", _num(".1f")),
    ("paper_source", "paper", _text),
    ("params_dev_pct", "Δ params", _num("+.1f", "%")), ("gmacs_dev_pct", "Δ FLOPs", _num("+.1f", "%")),
    ("miou", "mIoU (%)", _num(".1f")), ("miou_source", "mIoU from", _text),
]
LATENCY_MD = [("latency_input_size", "latency at", _text), ("latency_ms", "latency (ms)", _num(".2f")), ("latency_p90_ms", "p90 (ms)", _num(".2f")),
              ("fps", "FPS", _num(".1f")), ("peak_mem_mb", "peak mem (MB)", _num(".0f")),
              ("backend", "backend", _text), ("precision", "precision", _text), ("threads", "threads", _text),
              ("device", "device", _text)]
FRONT_MD = [("trial", "trial", _num("d")), ("preset", "preset", _text), ("miou", "mIoU (%)", _num(".2f")),
            ("accuracy", "mIoU from", _text),
            ("latency_ms", "latency (ms)", _num(".2f")), ("gmacs", "FLOPs (B)", _num(".2f")),
            ("params_m", "params (M)", _num(".2f")), ("width", "width", _num("g")), ("depth", "depth", _num("g")),
            ("channels", "BiFPN ch", _num("g")), ("repeats", "repeats", _num("g")), ("levels", "levels", _text)]


def environment_lines(records: Sequence[Any]) -> list[str]:
    """Software and counting conventions, plus each latency environment found in the records."""
    import torch

    import escale

    counters = sorted({r.counter for r in records})
    lines = [f"- escale {escale.__version__}, torch {torch.__version__}, Python {platform.python_version()}",
             f"- MAC counter: {', '.join(counters) or '–'} (one fused multiply-add = 1 FLOP, the paper's "
             f"convention; batch 1)"]
    for env in environments(records):
        lines.append("- latency measured with: " + ", ".join(f"{k}={_flat(v)}" for k, v in sorted(env.items())))
    loads = [r.extra["env"]["load_avg_1m"] for r in records if (r.extra.get("env") or {}).get("load_avg_1m") is not None]
    if loads:
        lines.append(f"- machine load (1-min load average) during the measurements: {min(loads):.1f}–{max(loads):.1f}")
    return lines


def _flat(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    return str(value)


def _figure(fig, out_dir: Path, stem: str, caption: str) -> tuple[list[Path], str]:
    paths = save_figure(fig, out_dir / "figures" / stem)
    md = f"![{caption}](figures/{stem}.png)\n\n*{caption}* ([PDF](figures/{stem}.pdf))"
    return paths, md


def _family_figures(records: Sequence[Any], table, out_dir: Path) -> tuple[list[Path], list[str]]:
    items = [
        (plots.plot_paper_figure1(table), "figure1",
         "The paper's Figure 1 redrawn from Table 4; hollow squares: escale's params/FLOPs for ESeg-S/M/L."),
        (plots.plot_paper_figure4(table), "figure4",
         "The paper's Figure 4 redrawn from Table 6 (FPS on the authors' V100 with TensorRT)."),
        (plots.plot_family(table, "flops", "miou"), "family-flops-miou",
         "escale's FLOPs count for the family vs the paper's mIoU; crosses: the paper's FLOPs."),
        (plots.plot_flops_breakdown(records), "flops-breakdown",
         "Share of multiply-adds by part and by pyramid level; totals above the bars."),
    ]
    if has_latency(table):
        items.append((plots.plot_family(table, "latency", "miou"), "family-latency-miou",
                      "Measured latency vs the paper's mIoU."))
    paths, blocks = [], []
    for fig, stem, caption in items:
        p, md = _figure(fig, out_dir, stem, caption)
        paths += p
        blocks.append(md)
    return paths, blocks


def _study_section(study: Any, out_dir: Path) -> tuple[list[Path], str]:
    frame = study_mod.trials_frame(study)
    _, cost_label = study_mod.cost_axis(study)
    name = study.study_name
    fig = plots.plot_study_front(frame, cost_label, name, budget=study_mod.budget(study))
    paths, md = _figure(fig, out_dir, "study-front", f"Study {name}: trials and Pareto front.")
    csv = out_dir / "study_trials.csv"
    frame.drop(columns=["spec"]).to_csv(csv, index=False)
    front = study_mod.front_table(frame)
    text = "\n".join([
        f"## Study `{name}`", "",
        f"{len(frame)} complete trials, {int(frame['feasible'].sum())} within constraints, "
        f"{len(front)} on the Pareto front (max mIoU, min {cost_label}). All trials: `study_trials.csv`.", "",
        *([f"Settings: {study_mod.settings_line(study)}.", ""] if study_mod.settings_line(study) else []),
        markdown_table(front, FRONT_MD), "", md, ""])
    return paths + [csv], text


def write_report(out_dir: str | Path, records: Sequence[Any], study: Any = None,
                 title: str = "ESeg family report") -> list[Path]:
    """Write the report page and its files under ``out_dir``; returns the paths written."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise EscaleError(f"--out: cannot write to {out_dir} ({exc.strerror or exc})") from None
    records = list(records)
    table = family_table(records)
    table.to_csv(out_dir / "family.csv", index=False)
    written = [out_dir / "family.csv", save_records(records, out_dir / "records.json")]
    fig_paths, fig_md = _family_figures(records, table, out_dir)
    written += fig_paths
    sizes = sorted({r for r in table["input_size"]})
    columns = FAMILY_MD + (LATENCY_MD if has_latency(table) else [])
    parts = [
        f"# {title}", "",
        "Generated by `escale report` from saved profile records (`records.json`); do not edit by hand.", "",
        f"## Family at {', '.join(sizes)} (batch 1)", "",
        markdown_table(table, columns), "",
        "FLOPs are billions of multiply-adds (one fused multiply-add = 1, as in the paper). Paper figures appear "
        "only for the paper's own configurations (matched by configuration, not by name) at 1024×2048 and 19 "
        "classes; the 'paper' column names the table (Table 4: ESeg-S/M/L; Sec. 3.2: ESeg-Lite-S FLOPs; Table 1: "
        "ESeg-S over P2–P5/P2–P7; Table 8: ResNet-50 + BiFPN). Δ = escale vs paper. mIoU is the paper's "
        "(Table 4; Table 6 at 1024×2048 for ESeg-Lite) unless trained by escale.", "",
        *([] if has_latency(table) else ["Latency: not measured in these records (measure with "
                                         "`escale profile --latency BACKEND --format json` and pass `--records`).", ""]),
        "## Environment", "", *environment_lines(records), "", "## Figures", "",
        "\n\n".join(fig_md), "",
    ]
    if study is not None:
        paths, text = _study_section(study, out_dir)
        written += paths
        parts += [text]
    page = out_dir / "README.md"
    page.write_text("\n".join(parts).rstrip() + "\n", encoding="utf-8")
    return [page, *written]
