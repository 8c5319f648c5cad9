"""The evaluation run behind zoo-eval: generate images for a prompt set, score them, report.

    results = evaluate(generate, prompts, "runs/demo/eval", num_samples=4, seed=0,
                       reference="data/real_images", shapes_check=True)

`generate(texts, prompt_ids, num_samples, seed)` returns (images float [B, S, H, W, 3] in
[0, 1], scores [B, S] or None); sample s of prompt p must depend only on (seed, p, s), which
zoo's sampler guarantees, so an interrupted run resumes with the prompts it had not finished
and gets the same images as an uninterrupted one.

Writes into `output_dir`: `images/p0000_s0.png ...`, `samples.jsonl` (one line per finished
prompt), `results.json`, `summary.txt` and the gallery `index.html`.
"""

import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from zoo.errors import ZooError
from zoo.eval import gallery as gallery_lib
from zoo.eval import report
from zoo.eval.prompts import Prompt

log = logging.getLogger("zoo")

IMAGES_DIR = "images"
SAMPLES_FILE = "samples.jsonl"
MANIFEST_FILE = "generation.json"
FID_STATS_FILE = "fid_reference_stats.npz"

Generate = Callable[[List[str], List[int], int, int], Any]


def to_uint8(images) -> np.ndarray:
    """[0, 1] floats -> uint8, round to nearest (as zoo-export's graph does)."""
    return np.round(np.clip(np.asarray(images, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def _image_name(prompt_index: int, sample: int) -> str:
    return f"{IMAGES_DIR}/p{prompt_index:04d}_s{sample}.png"


def _read_done(out: Path, manifest: Dict[str, Any]) -> Dict[int, Dict[str, Any]]:
    """Finished prompts of an earlier run with the same settings (else nothing)."""
    manifest_path, samples_path = out / MANIFEST_FILE, out / SAMPLES_FILE
    if not manifest_path.is_file() or not samples_path.is_file():
        return {}
    try:
        old = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if old != manifest:
        log.info("zoo-eval: settings changed since the last run in %s; generating again", out)
        return {}
    done = {}
    for line in samples_path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # a line cut by an interruption
            continue
        if all((out / name).is_file() for name in row.get("images", ())):
            done[int(row["index"])] = row
    return done


def generate_all(generate: Generate, prompts: Sequence[Prompt], output_dir, *, num_samples: int,
                 seed: int, batch_size: int = 8, settings: Optional[Dict[str, Any]] = None,
                 progress: bool = True) -> List[Dict[str, Any]]:
    """Generates (or resumes) the samples of every prompt; returns one row per prompt."""
    out = Path(output_dir)
    (out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    manifest = {"prompts": [p.text for p in prompts], "num_samples": int(num_samples),
                "seed": int(seed), "settings": report._jsonable(settings or {})}
    done = _read_done(out, manifest)
    if not done:
        (out / SAMPLES_FILE).write_text("", encoding="utf-8")
        _write_json(out / MANIFEST_FILE, manifest)
    todo = [i for i in range(len(prompts)) if i not in done]
    if done and todo:
        print(f"zoo-eval: resuming: {len(done)} of {len(prompts)} prompts already generated",
              file=sys.stderr)
    bar = _progress(progress, total=len(prompts), initial=len(done), desc="generating")
    with open(out / SAMPLES_FILE, "a", encoding="utf-8") as samples_file:
        for start in range(0, len(todo), batch_size):
            ids = todo[start:start + batch_size]
            images, scores = _call_generate(generate, [prompts[i].text for i in ids], ids,
                                            num_samples, seed)
            for row_index, i in enumerate(ids):
                names = []
                for s in range(num_samples):
                    name = _image_name(i, s)
                    _save_png(out / name, images[row_index, s])
                    names.append(name)
                row = {"index": i, **prompts[i].to_json(), "prompt": prompts[i].text,
                       "images": names}
                row.pop("text", None)
                if scores is not None:
                    row["scores"] = [float(x) for x in scores[row_index]]
                samples_file.write(json.dumps(row, ensure_ascii=False) + "\n")
                samples_file.flush()
                done[i] = row
            bar.update(len(ids))
    bar.close()
    return [done[i] for i in range(len(prompts))]


def _call_generate(generate, texts, ids, num_samples, seed):
    result = generate(texts, ids, num_samples, seed)
    images, scores = result if isinstance(result, tuple) else (result, None)
    images = np.asarray(images)
    if images.ndim != 5 or images.shape[:2] != (len(texts), num_samples) or images.shape[-1] != 3:
        raise ZooError(f"the generator returned images of shape {images.shape}; expected "
                       f"[{len(texts)}, {num_samples}, H, W, 3]")
    if scores is not None:
        scores = np.asarray(scores, np.float64).reshape(len(texts), num_samples)
    return images, scores


def _save_png(path: Path, image) -> None:
    from PIL import Image
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(to_uint8(image)).save(tmp, format="PNG")
    os.replace(tmp, path)


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _progress(enabled, total, initial, desc):
    if enabled:
        try:
            from tqdm import tqdm
            return tqdm(total=total, initial=initial, desc=desc, unit="prompt", file=sys.stderr,
                        dynamic_ncols=True)
        except ImportError:
            pass

    class _Silent:
        def update(self, n):
            pass

        def close(self):
            pass

    return _Silent()


def load_images(output_dir, rows: Sequence[Dict[str, Any]]) -> np.ndarray:
    """The saved samples as float [P, S, H, W, 3] in [0, 1] (what the metrics see)."""
    from PIL import Image
    out = Path(output_dir)
    return np.stack([np.stack([np.asarray(Image.open(out / name).convert("RGB"), np.float32)
                               / 255.0 for name in row["images"]]) for row in rows])


def evaluate(generate: Generate, prompts: Sequence[Prompt], output_dir, *, num_samples: int = 4,
             seed: int = 0, batch_size: int = 8, reference=None,
             feature_network: Optional[str] = None, shapes_check: Optional[bool] = None,
             scorer: Optional[Callable] = None, similarity: Optional[Callable] = None,
             extra_metrics: Optional[Dict[str, Any]] = None,
             info: Optional[Dict[str, Any]] = None, progress: bool = True) -> Dict[str, Any]:
    """Generates, scores and reports; returns the results dict (also written to disk).

    Args:
        generate: see the module docstring.
        prompts: the prompt set (`zoo.eval.prompts.load_prompts`).
        output_dir: where images, results and the gallery go.
        num_samples: samples per prompt. seed: sampling seed. batch_size: prompts per call.
        reference: real images for FID and KID: a folder, a .npz of FID statistics, or an
            array [N, H, W, 3] in [0, 1] (e.g. a dataset's held-out images).
        feature_network: registered feature network for FID/KID (None: InceptionV3 when its
            weights file is present, else `random_conv`; results say which and what follows).
        shapes_check: run the synthetic-shapes checker; None: when every prompt is a shapes
            caption.
        scorer: optional `scorer(images float [N, H, W, 3], texts [N]) -> [N]` image-text
            agreement (contrastive score); its mean is reported as `contrastive_score`.
        similarity: optional `similarity(images [N, H, W, 3], texts [P]) -> [N, P]` (the
            reranker's scores of every image with every prompt): gives the caption-following
            rate and its chance level (`zoo.eval.following`).
        extra_metrics: more metrics for results.json and the summary (e.g. held-out figures).
        info: extra fields for results.json (model_dir, guidance_scale, ...).
    """
    if not prompts:
        raise ZooError("the prompt set is empty; pass --prompts with at least one prompt")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ZooError(f"--num_samples must be a positive integer, got {num_samples!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ZooError(f"--batch_size must be a positive integer, got {batch_size!r}")
    if reference is not None:
        check_reference(reference)
    if shapes_check and not _all_shapes(prompts):
        raise ZooError("--shapes_check needs synthetic_shapes captions as prompts (e.g. "
                       "--prompts=shapes); some prompts are not")
    out = Path(output_dir)
    rows = generate_all(generate, prompts, out, num_samples=num_samples, seed=seed,
                        batch_size=batch_size, settings=info, progress=progress)
    images = load_images(out, rows)
    flat = images.reshape((-1,) + images.shape[2:])
    texts = [row["prompt"] for row in rows for _ in range(num_samples)]
    metrics: Dict[str, Any] = {}
    details: List[List[str]] = [[] for _ in rows]

    if shapes_check is None:
        shapes_check = _all_shapes(prompts)
    if shapes_check:
        from zoo.eval.shapes_eval import describe, shapes_acceptance
        checked = shapes_acceptance(texts, flat)
        metrics["shapes_acceptance"] = checked["acceptance"]
        shapes_results = {k: checked[k] for k in ("acceptance", "by_feature", "count",
                                                  "unreadable")}
        if all(row.get("scores") for row in rows) and num_samples > 1:
            # Samples come best first when a scorer reranked them: the first one of each
            # prompt is what a reranking system would show.
            top = [checked["accepted"][p * num_samples] for p in range(len(rows))]
            top = [bool(t) for t in top if t is not None]
            if top:
                shapes_results["acceptance_top1"] = float(np.mean(top))
                metrics["shapes_acceptance_top1"] = shapes_results["acceptance_top1"]
        metrics["shapes_acceptance_by_feature"] = checked["by_feature"]
        for p, row in enumerate(rows):
            part = slice(p * num_samples, (p + 1) * num_samples)
            row["accepted"] = checked["accepted"][part]
            row["checker"] = checked["features"][part]
            details[p] = [f"sample {s}: {describe(f)}" for s, f in enumerate(row["checker"])]

    if scorer is not None:
        scores = np.asarray(scorer(flat, texts), np.float64).reshape(len(rows), num_samples)
        metrics["contrastive_score"] = float(scores.mean())
        for row, s in zip(rows, scores):
            row["contrastive"] = [float(x) for x in s]

    if similarity is not None and len({row["prompt"] for row in rows}) > 1:
        from zoo.eval.following import caption_following, similarity_matrix
        texts_p = [row["prompt"] for row in rows]
        matrix = similarity_matrix(similarity, images, texts_p)
        follow = caption_following(matrix, texts_p)
        metrics["caption_following"] = follow["rate"]
        metrics["caption_following_chance"] = follow["chance"]
        if all(row.get("scores") for row in rows) and num_samples > 1:
            # Best first: the reranker's first pick of each prompt against the others'.
            metrics["caption_following_first_pick"] = caption_following(
                matrix, texts_p, sample_index=0)["rate"]
        for row, rate in zip(rows, follow["per_prompt"]):
            row["caption_following"] = rate

    fid_note = None
    if reference is not None:
        from zoo.eval.fid import (FrechetInceptionDistance, available_feature_network,
                                  feature_statistics, frechet_distance, kernel_distance,
                                  save_statistics)
        if feature_network is None:
            feature_network, fid_note = available_feature_network()
        fid = FrechetInceptionDistance(feature_network=feature_network, batch_size=32)
        generated = fid.features(flat)
        metrics["fid_images"] = int(len(flat))
        metrics["fid_feature_network"] = feature_network
        if isinstance(reference, (str, os.PathLike)) and str(reference).endswith(".npz"):
            ref_mu, ref_sigma = fid.statistics(reference)  # statistics only: no KID
        else:
            ref_features = fid.features(reference)
            ref_mu, ref_sigma = feature_statistics(ref_features)
            metrics["kid"] = kernel_distance(generated, ref_features)
            metrics["fid_reference_images"] = int(len(ref_features))
            if isinstance(reference, (str, os.PathLike)):
                save_statistics(out / FID_STATS_FILE, ref_mu, ref_sigma)
        metrics["fid"] = frechet_distance(*feature_statistics(generated), ref_mu, ref_sigma)

    for name, value in (extra_metrics or {}).items():
        metrics[name] = value

    notes = []
    if reference is None:
        notes.append("FID not computed: pass --reference_dir=<folder of real images>")
    elif fid_note:
        notes.append(f"FID/KID feature network: {fid_note}")
    if scorer is None:
        notes.append("contrastive score not computed: no scorer configured (--scorer)")
    results = {**(info or {}), "num_prompts": len(rows), "num_samples": num_samples,
               "seed": seed, "metrics": metrics, "samples": rows, "notes": notes}
    if shapes_check:
        results["shapes"] = shapes_results
    if reference is not None:
        results["reference"] = (str(reference) if isinstance(reference, (str, os.PathLike))
                                else f"{len(reference)} images given as an array")
    json_path, summary_path = report.write_results(out, results)
    entries = [gallery_lib.GalleryEntry(
        prompt=row["prompt"], images=row["images"],
        scores=row.get("scores", row.get("contrastive")),
        accepted=row.get("accepted"), category=row.get("category"),
        challenge=row.get("challenge"), details=details[p]) for p, row in enumerate(rows)]
    gallery_lib.write_gallery(out, entries, title=f"zoo-eval: {len(rows)} prompts",
                              summary=summary_path.read_text(encoding="utf-8"))
    return report.read_results(out)


def _all_shapes(prompts: Sequence[Prompt]) -> bool:
    from zoo.data import shapes
    try:
        for p in prompts:
            shapes.parse_caption(p.text)
    except ZooError:
        return False
    return True


def check_reference(reference) -> None:
    """A clear error now (before any generation) when FID's reference is missing or empty."""
    if not isinstance(reference, (str, os.PathLike)):
        if np.asarray(reference).ndim != 4 or len(reference) < 2:
            raise ZooError("FID reference images must be an array [N >= 2, H, W, 3]")
        return
    path = Path(reference)
    if str(reference).endswith(".npz"):
        if not path.is_file():
            raise ZooError(f"--reference_dir {str(reference)!r} does not exist; pass a folder of "
                           f"reference images or a .npz of statistics written by zoo-eval "
                           f"({FID_STATS_FILE})")
        return
    from zoo.eval.fid import list_images
    list_images(path)  # missing / empty folder: a clear error before any generation
