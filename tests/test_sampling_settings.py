"""A run's recorded sampling settings (sampling.json): flags over recorded over defaults."""

import json

import pytest

from zoo.errors import ZooError
from zoo.models import sampling_settings as ss


def test_flags_override_recorded_which_override_defaults(tmp_path):
    assert ss.resolve(str(tmp_path)).values == ss.DEFAULTS
    assert set(ss.resolve(str(tmp_path)).sources.values()) == {"default"}
    path = ss.record(str(tmp_path), {"temperature": 0.7, "guidance_scale": 3.0},
                     {"grid": [{"temperature": 0.7, "score": 0.5}]})
    assert json.loads(open(path).read())["grid"][0]["score"] == 0.5
    got = ss.resolve(str(tmp_path), guidance_scale=1.5, top_k=None)
    assert got.values == {"temperature": 0.7, "top_k": 0, "top_p": 1.0, "guidance_scale": 1.5}
    assert got.sources == {"temperature": "recorded", "top_k": "default", "top_p": "default",
                           "guidance_scale": "flag"}
    assert got.describe() == ("temperature 0.7 (recorded), top_k 0 (default), top_p 1 "
                              f"(default), guidance_scale 1.5 (flag); recorded in {path}")
    assert ss.resolve(None, temperature=0.0).values["temperature"] == 0.0  # 0 is a value


def test_bad_records_and_names_are_clear(tmp_path):
    with pytest.raises(ZooError, match="unknown sampling settings \\['temprature'\\]"):
        ss.resolve(str(tmp_path), temprature=0.5)
    with pytest.raises(ZooError, match="unknown sampling settings"):
        ss.record(str(tmp_path), {"seed": 1})
    (tmp_path / ss.SETTINGS_FILE).write_text("{not json")
    with pytest.raises(ZooError, match="sampling.json is unreadable"):
        ss.resolve(str(tmp_path))
    (tmp_path / ss.SETTINGS_FILE).write_text("[]")
    with pytest.raises(ZooError, match="has no 'settings' entry"):
        ss.resolve(str(tmp_path))
