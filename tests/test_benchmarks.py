"""The benchmark commands of the README on their smoke presets (tiny random encoders, generated data, seconds each),
so that a change to the library that breaks a benchmark fails the default test run instead of the next benchmark run.

Their numbers mean nothing at this size: the tests check that every measurement is there and well-formed.
"""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def keep_torch_threads():
    """perf.py pins torch to the preset's thread count; give the rest of the test session its threads back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_perf_smoke_preset_measures_everything(tmp_path, keep_torch_threads, capsys):
    perf = load_script("perf")
    out = tmp_path / "perf_smoke.json"
    assert perf.main(["--preset", "smoke", "--out", str(out), "--workdir", str(tmp_path / "work")]) == 0

    results = json.loads(out.read_text())
    assert results["preset"]["name"] == "smoke"
    training = results["training"]
    assert training["measured_steps"] == perf.PRESETS["smoke"].measured_steps
    ratios = [
        training["ratios"]["multitask_vs_baseline"]["median"],
        results["inference"]["ratios"]["k_tasks_one_pass_over_one_task"],
        results["inference"]["ratios"]["k_tasks_one_pass_fusion_over_one_task"],
        results["data_pipeline"]["headroom"],
        *results["memory"]["ratios"].values(),
    ]
    assert all(math.isfinite(ratio) and ratio > 0 for ratio in ratios), ratios
    assert math.isfinite(training["fusion_component"]["overhead"])
    assert sorted(results["memory"]["ratios"]) == ["multitask", "multitask_fusion"]
    # The printed table is the one written to the JSON, with one row per measurement.
    table = results["table"]
    assert table in capsys.readouterr().out
    for row in (
        "| (a) train",
        "| (b) fusion extra",
        "| (b) fusion path",
        "| (c) inference",
        "| (d) data",
        "| (e) peak",
    ):
        assert row in table, row


def test_run_quality_smoke_benchmark_trains_every_variant(tmp_path):
    run_quality = load_script("run_quality")
    assert run_quality.main(["smoke", "--seeds", "1", "--runs-dir", str(tmp_path)]) == 0

    # Its results stay with the runs: benchmarks/results holds only real benchmarks.
    assert not (BENCHMARKS / "results" / "smoke.json").exists()
    record = json.loads((tmp_path / "smoke" / "results" / "smoke.json").read_text())
    assert record["protocol"]["split"] == "test"
    assert sorted(record["summary"]) == ["fusion", "no_fusion", "single_task"]
    for variant, table in record["summary"].items():
        for key in ("test/intent/accuracy", "test/slots/f1", "test/intent+slots/sentence_accuracy"):
            assert 0 <= table["metrics"][key]["mean"] <= 100, (variant, key)
        assert table["metrics"]["test/similarity/pearson"]["n"] == 1, variant  # NaN allowed: may predict a constant
    assert "| intent+slots | sentence_accuracy |" in (tmp_path / "smoke" / "results" / "smoke.md").read_text()


def test_scale_smoke_preset_measures_every_k(tmp_path, capsys):
    scale = load_script("scale")
    out = tmp_path / "scale_smoke.json"
    threads = torch.get_num_threads()
    assert scale.main(["--preset", "smoke", "--out", str(out), "--workdir", str(tmp_path / "work")]) == 0
    assert torch.get_num_threads() == threads  # the preset's thread count does not leak into the session

    results = json.loads(out.read_text())
    ks = [str(k) for k in scale.PRESETS["smoke"].ks]
    assert results["preset"]["ks"] == [1, 3, 12]
    for section in ("training", "step_parts", "checkpoints", "evaluation"):
        assert sorted(results[section]["by_k"], key=int) == ks, section
    assert results["training"]["measured_steps"] == scale.PRESETS["smoke"].measured_steps
    assert results["training"]["by_k"]["1"]["ratio_to_k1"]["median"] == 1.0
    for k in ks:
        assert math.isfinite(results["training"]["by_k"][k]["ratio_to_k1"]["median"]), k
        assert set(results["step_parts"]["by_k"][k]["median_ms"]) == set(scale.PARTS), k
        assert results["evaluation"]["by_k"][k]["examples"] == int(k) * scale.PRESETS["smoke"].eval_examples_per_task
    checkpoints = results["checkpoints"]["by_k"]
    # More tasks, more heads: the checkpoint grows by about the heads' float32 bytes (plus safetensors headers).
    assert (
        checkpoints["1"]["safetensors_bytes"]
        < checkpoints["3"]["safetensors_bytes"]
        < checkpoints["12"]["safetensors_bytes"]
    )
    assert 1.0 <= checkpoints["12"]["growth_over_head_bytes"] < 1.2
    table = results["table"]
    assert table in capsys.readouterr().out
    for row in ("| (1) ratio to K = 1", "| (2) forward_backward", "| (3) checkpoint", "| (4) evaluate"):
        assert row in table, row


def test_scale_data_part_measures_start_up_and_rss_per_size(tmp_path, capsys):
    scale = load_script("scale")
    out = tmp_path / "scale_data_smoke.json"
    assert scale.main(["--part", "data", "--preset", "smoke", "--out", str(out), "--workdir", str(tmp_path)]) == 0

    results = json.loads(out.read_text())
    data = scale.DATA_PRESETS["smoke"]
    assert list(results["data"]["by_size"]) == [str(size) for size in data.sizes]
    for size, measured in results["data"]["by_size"].items():
        assert measured["map_first"]["cache_hits"] == [] and measured["map_cached"]["cache_hits"] == ["topic"], size
        for mode in ("map_first", "map_cached"):
            assert measured[mode]["seconds"] > 0 and measured[mode]["peak_rss_mb"] > 0, (size, mode)
            assert measured[mode]["batch_shape"][0] == 32, (size, mode)
        assert ("in_memory" in measured) == (int(size) in data.in_memory_sizes), size
        assert measured["cache_bytes"] > 0
        streamed = measured["stream_first"]  # counts the stream and reads its labels, then draws a batch
        assert streamed["cache_hits"] == [] and streamed["peak_rss_mb"] > 0 and streamed["batch_shape"][0] == 32
    assert results["data"]["stream_rss_ratio"] > 0
    assert results["table"] in capsys.readouterr().out
    assert "| map, cached run: start-up (s) |" in results["table"]
    assert "| streaming, first run: peak RSS (MB) |" in results["table"] and "streaming: " in results["table"]
