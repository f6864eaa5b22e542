"""Reports: the paper's reference points, tables and publication figures over saved records, report pages.

Pure functions over records / DataFrames (never over live models):

>>> from escale.report import family_table, plot_paper_figure1, save_figure
>>> table = family_table(records)                  # records: escale.profile(...) results
>>> save_figure(plot_paper_figure1(table), "fig1")  # fig1.pdf + fig1.png
"""

from escale.report.markdown import markdown_table, write_report
from escale.report.plots import (
    AXES,
    FIGURES,
    axis,
    paper_figure,
    plot_family,
    plot_flops_breakdown,
    plot_paper_figure1,
    plot_paper_figure4,
    plot_study_front,
)
from escale.report.reference import paper_miou, paper_points
from escale.report.study import budget as study_budget
from escale.report.study import cost_axis, front_table, load_study, pareto_mask, trials_frame
from escale.report.style import save_figure
from escale.report.tables import family_table, load_records, save_records

__all__ = [
    "AXES", "FIGURES", "axis", "cost_axis", "family_table", "front_table", "load_records", "load_study",
    "markdown_table", "paper_figure", "paper_miou", "paper_points", "pareto_mask", "plot_family",
    "plot_flops_breakdown", "plot_paper_figure1", "plot_paper_figure4", "plot_study_front", "save_figure",
    "save_records", "study_budget", "trials_frame", "write_report",
]
