"""Smoke test of benchmarks/data_pipeline.py on a tiny input (the figures themselves are not
asserted: they depend on the machine)."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
import data_pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_benchmark_writes_both_figures(tmp_path):
  out = tmp_path / "result.json"
  data_pipeline.main(["--num_videos", "2", "--num_frames", "4", "--resolution", "32",
                      "--num_pairs", "16", "--min_records", "8", "--batch_size", "4",
                      "--max_objects", "5", "--repeats", "1", "--data_dir", str(tmp_path / "d"),
                      "--out", str(out)])
  report = json.loads(out.read_text())
  assert report["records_presented"] == 8
  for variant in ("rendered", "noisy"):
    result = report["variants"][variant]
    assert result["records_read_per_pair"] == 3 and result["num_pairs"] == 16
    assert result["pipeline_pairs_per_s_per_core"] > 0 and result["decode_pairs_per_s_per_core"] > 0
    assert 0 < result["ratio_per_core"] == result["ratio_per_core_all_runs"][0]
    assert result["mean_kib_read_per_pair"] <= result["mean_record_kib"]
    assert result["stats"]["objects/kept"] > 0
