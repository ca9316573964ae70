"""The files profile, compare, train and merge write keep their columns, in their order: scripts and notebooks read
them by name. A fixed run of each is held to tests/data/output_headers.json; a change of columns is a change of
that file, made on purpose (CONVBENCH_UPDATE_HEADERS=1 python -m pytest tests/test_output_files.py rewrites it)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from convbench.analysis.merge import merge
from convbench.run.compare import run_compare
from convbench.run.config import CompareConfig, ProfileConfig, TrainConfig
from convbench.run.profile import run_profile
from convbench.run.train import run_train

GOLDEN = Path(__file__).parent / "data" / "output_headers.json"
TINY = "convbench.selfcheck.fixtures:tiny"


def _headers(root: Path) -> dict[str, str]:
    found = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.suffix in (".csv", ".md"):
            found[key] = path.read_text().splitlines()[0]
        elif path.suffix == ".json" and path.stem in ("profile", "compare"):
            found[key] = ",".join(json.loads(path.read_text())[0])
    return found


def test_every_output_file_keeps_its_columns(tmp_path):
    run_profile(ProfileConfig(arch=f"{TINY},alexnet", batch_sizes=(1, 2), input_size=32, iters=2, warmup=0, cpu_memory=False,
                              by_layer=True, formats=("csv", "json", "md"), out=tmp_path / "profile"))
    run_compare(CompareConfig(name="reduction", pairs=6, warmup=0, shape=(8, 8, 8), formats=("csv", "json", "md"),
                              out=tmp_path / "compare"))
    run_train(TrainConfig(arch="resnet18", steps=2, batch_size=2, input_size=32, out=tmp_path / "train"))
    for i in (1, 2):
        run_profile(ProfileConfig(arch=f"{TINY},alexnet", metrics="static", shard=(i, 2, "--shard"),
                                  out=tmp_path / "shards" / "shards" / f"{i}-of-2"))
    merge([tmp_path / "shards"], tmp_path / "merged")
    got = {k: v for k, v in _headers(tmp_path).items() if not k.startswith("shards/")}
    if os.environ.get("CONVBENCH_UPDATE_HEADERS"):
        GOLDEN.write_text(json.dumps(got, indent=1) + "\n")
    assert got == json.loads(GOLDEN.read_text())
