"""zoo-demo end to end (a few steps per stage), and a second run resumes instead of restarting."""

import json
import os
import re

import pytest

from helpers_tools import run_tool


@pytest.mark.slow
def test_demo_quick_runs_every_stage_and_resumes(tmp_path):
    out = tmp_path / "demo"
    r = run_tool("demo", "--quick", f"--model_dir={out}", timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    for i, title in enumerate(["text tokenizer", "image tokenizer", "reranker", "transformer",
                               "samples + evaluation"], 1):
        assert f"[{i}/5] {title}" in r.stdout, r.stdout
    assert "zoo-demo: done" in r.stdout
    # The eval stage's line: acceptance of all samples (and of the reranker's first picks
    # when there are several samples per prompt; --quick draws one).
    assert re.search(r"shapes checker acceptance [\d.]+% of all samples, "
                     r"([\d.]+% of the reranked first picks, )?gallery ", r.stdout), r.stdout
    assert (out / "spm" / "spm.model").exists()
    # BPE keeps every caption word one piece (unigram on this little text splits words into
    # letters shared across words: "green" -> _ g re en).
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=str(out / "spm" / "spm.model"))
    assert sp.encode("a little green triangle at the top", out_type=str) == [
        "\u2581a", "\u2581little", "\u2581green", "\u2581triangle", "\u2581at", "\u2581the",
        "\u2581top"]
    # The demo's images are 48x48 (cells of the 3x3 grid are 4x4 codes of 4x4 pixels).
    tok = json.loads((out / "tokenizer" / "run.json").read_text())["task_config"]
    assert tok["tokenizer_options"]["image_size"] == 48, tok
    assert tok["tokenizer_options"]["patch_size"] == 4, tok
    for stage in ("tokenizer", "contrastive", "parti"):
        run = json.loads((out / stage / "run.json").read_text())
        assert run["task"] in ("vit_vqgan", "contrastive", "parti"), run
        assert (out / stage / "operative_config.gin").exists()
    assert (out / "eval" / "index.html").exists()
    results = json.loads((out / "eval" / "results.json").read_text())
    assert results["temperature"] == 0.5  # the demo's measured sampling temperature
    assert (out / "eval" / "grid.png").exists()
    assert "Traceback" not in r.stderr

    # Run again: finished stages are not redone.
    spm_mtime = os.path.getmtime(out / "spm" / "spm.model")
    r2 = run_tool("demo", "--quick", f"--model_dir={out}", "--stages=spm,tokenizer", timeout=600)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert "(exists)" in r2.stdout
    assert "already at step 3" in r2.stdout
    assert os.path.getmtime(out / "spm" / "spm.model") == spm_mtime


def test_demo_rejects_unknown_stage(tmp_path):
    r = run_tool("demo", "--stages=tokeniser", f"--model_dir={tmp_path}")
    assert r.returncode == 1
    assert "unknown stage 'tokeniser'" in r.stderr and "did you mean 'tokenizer'" in r.stderr
