"""Evaluation results: JSON + readable summary with per-group tables."""

import json
import math

import numpy as np

from zoo.eval import report


def test_results_json_and_summary(tmp_path):
    results = {
        "model_dir": "runs/demo", "prompts": "partiprompts", "num_prompts": 3, "num_samples": 2,
        "metrics": {"fid": np.float32(12.5), "clip_score": 0.25, "missing": math.nan,
                    "shapes_acceptance_by_feature": {"colour": 0.75, "count": 1.0}},
        "samples": [
            {"prompt": "a", "category": "Animals", "challenge": "Basic", "images": ["1", "2"],
             "scores": [0.2, 0.4], "accepted": [True, False]},
            {"prompt": "b", "category": "Animals", "challenge": "Complex", "images": ["3", "4"],
             "scores": [0.6, 0.8], "accepted": [True, True]},
            {"prompt": "c", "category": "Arts", "challenge": "Basic", "images": ["5", "6"]},
        ],
    }
    json_path, summary_path = report.write_results(tmp_path, results)
    data = json.loads(json_path.read_text())
    assert data["metrics"]["fid"] == 12.5 and data["metrics"]["missing"] is None
    assert data["groups"]["category"]["Animals"] == {
        "prompts": 2, "images": 4, "mean_score": 0.5, "acceptance": 0.75}
    assert data["groups"]["category"]["Arts"] == {"prompts": 1, "images": 2}
    assert data["groups"]["challenge"]["Basic"]["prompts"] == 2
    assert report.read_results(tmp_path)["num_samples"] == 2

    summary = summary_path.read_text()
    assert "fid" in summary and "12.5000" in summary and "n/a" in summary
    assert "colour" in summary and "0.7500" in summary
    lines = summary.splitlines()
    animals = next(line for line in lines if line.strip().startswith("Animals"))
    assert animals.split() == ["Animals", "2", "4", "0.5000", "0.7500"]
    assert any(line.startswith("by challenge") for line in lines)


def test_no_groups_without_categories(tmp_path):
    report.write_results(tmp_path, {"samples": [{"prompt": "x", "images": ["a"]}],
                                    "metrics": {"shapes_acceptance": 0.5}})
    data = report.read_results(tmp_path)
    assert data["groups"] == {}
    assert "by " not in (tmp_path / report.SUMMARY_NAME).read_text()
