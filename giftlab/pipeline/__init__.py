"""`giftlab pipeline`: base -> {SFT, GIFT at several beta, ...} -> the same GRPO budget -> eval,
over training seeds, into one report folder. config.py (PipelineConfig, the start specs),
layout.py (the folders a pipeline owns), run.py (the run), report.py (report.md, pipeline.png)."""

from giftlab.pipeline.config import PipelineConfig, init_display
from giftlab.pipeline.layout import PipelineLayout, cell_name
from giftlab.pipeline.report import model_display, rebuild_report
from giftlab.pipeline.run import run_pipeline

__all__ = [
    "PipelineConfig",
    "PipelineLayout",
    "cell_name",
    "init_display",
    "model_display",
    "rebuild_report",
    "run_pipeline",
]
