"""The Ignite metrics under torch.distributed: two CPU processes (gloo), uneven shards, all-gathered."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import ignite.distributed as idist
import pytest
from ignite.engine import Engine
from test_metrics import attach_all, batches, expected_metrics


def _evaluate_shard(local_rank: int, out_dir: str) -> None:
    assert idist.get_world_size() == 2 and idist.backend() == "gloo"
    data, *_ = batches()
    shard = data[idist.get_rank() :: idist.get_world_size()]  # 3 and 3 batches of uneven sizes (4,4,4 / 4,4,1)
    engine = Engine(lambda engine, batch: batch)
    attach_all(engine)
    state = engine.run(shard)
    result = {k: v for k, v in state.metrics.items() if not isinstance(v, dict)}
    Path(out_dir, f"rank{idist.get_rank()}.json").write_text(json.dumps(result))


@pytest.mark.skipif(sys.platform == "win32", reason="gloo spawn on Linux/macOS")
def test_two_process_gloo_run_equals_the_plain_functions(tmp_path):
    with idist.Parallel(backend="gloo", nproc_per_node=2, master_port=29517) as parallel:
        parallel.run(_evaluate_shard, str(tmp_path))
    _, scores, decisions, labels = batches()
    expected = expected_metrics(scores, decisions, labels)
    for rank in (0, 1):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        for name, value in expected.items():
            assert result[name] == pytest.approx(value, abs=1e-4), (rank, name)
