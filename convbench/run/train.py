"""`convbench train`: what a training step costs and whether a short run learns. A plan for the sweep runner
(convbench.run.sweep), whose unit is a network to train (convbench.run.training runs it). With
`nproc_per_node > 1` the same run is launched again on that many processes with DistributedDataParallel after the
one-process run, to report aggregate images/s and scaling efficiency (convbench.run.ddp)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from convbench.measure.complexity import count
from convbench.results.schema import STEP_COLUMNS, STEPS_CSV, TRAIN_COLUMNS
from convbench.results.writers import RowWriter
from convbench.run import ddp, rows, sweep
from convbench.run.config import TrainConfig
from convbench.run.rows import Row
from convbench.run.training import TrainingRun, meta_build, sides_for, train_row

if TYPE_CHECKING:
    import pandas as pd


class TrainPlan(sweep.Plan[TrainingRun]):
    kind = "train"
    unit_column = "run"
    columns = TRAIN_COLUMNS
    config_class = TrainConfig

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(config)
        self._steps: RowWriter | None = None

    def units(self) -> list[TrainingRun]:
        return sides_for(self.config, self.refused)

    def name(self, side: TrainingRun) -> str:
        return side.run

    def cost(self, side: TrainingRun) -> float:
        """A network's share of a training sweep (every side runs the same steps and batch): its MACs per image."""
        try:
            return float(count(meta_build(side, 10), (1, *side.input_shape))["macs"])
        except Exception:
            return 1.0

    @classmethod
    def keys(cls, config: TrainConfig, name: str) -> list[sweep.Key]:
        return [{"run": name, "nproc": n} for n in dict.fromkeys((1, config.nproc_per_node))]

    def describe(self, side: TrainingRun, key: sweep.Key) -> dict[str, Any]:
        return {"run": side.run, "model": side.model, **key}

    def measure(self, side: TrainingRun, on_stage: rows.OnStage | None, on_event: sweep.OnEvent) -> Iterator[Row]:
        if on_stage:
            on_stage("training", side.run)
        one = train_row(side, self.config, on_event)
        yield one
        if self.config.nproc_per_node > 1 and one.values["status"] == rows.OK:
            yield ddp.launch(self.config, side, one.values)

    def stops(self, row: dict[str, Any]) -> str | None:
        return row["error"] if row["status"] == rows.DIVERGED else None

    def open(self, out: Path | None) -> None:
        self._steps = RowWriter(out / STEPS_CSV, STEP_COLUMNS) if out is not None else None

    def event(self, event: dict[str, Any]) -> None:
        if self._steps:
            self._steps.write(event)

    def close(self) -> None:
        if self._steps:
            self._steps.close()
            self._steps = None


def run_train(config: TrainConfig, on_step: Callable[[dict[str, Any]], None] | None = None) -> sweep.SweepResult:
    return sweep.run(TrainPlan(config), on_event=on_step)


def train(arch: str = "resnet18", steps: int = 50, batch_size: int = 32, device: str = "cpu",
          out: str | Path | None = None, **options: Any) -> pd.DataFrame:
    """Library call behind `convbench train`, one summary row per run as a DataFrame; options are TrainConfig's."""
    config = TrainConfig(arch=arch, steps=steps, batch_size=batch_size, device=device,
                         out=Path(out) if out is not None else None, **options)
    return run_train(config).frame
