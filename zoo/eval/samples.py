"""zoo-sample's library side: images for prompts from a trained Parti run, written to a folder.

    rows = sample_run("runs/demo/parti", prompts=["a red circle at the top"], num_samples=4,
                      output_dir="runs/samples")

Writes `images/p0000_s0.png ...` (each prompt's samples best first when a scorer reranks them),
`samples.jsonl` (one line per prompt: text, files, scores) and a gallery `index.html`. Sampling
settings: those given, else the run's recorded ones (`sampling.json`), else the defaults
(zoo.models.sampling_settings); logged at start.
"""

import json
import logging
import os
import sys

log = logging.getLogger("zoo")


def read_prompts(prompts, prompts_file=None, max_prompts=None):
    """[zoo.eval.prompts.Prompt] from flag values and/or a file."""
    from zoo.errors import ZooError
    from zoo.eval.prompts import Prompt, load_prompts
    out = [Prompt(text=p, source=f"--prompt #{i + 1}") for i, p in enumerate(prompts)]
    if prompts_file:
        shipped = prompts_file.strip().lower() == "partiprompts"  # zoo's package data
        if not shipped and not os.path.isfile(prompts_file):
            raise ZooError(f"--prompts_file {prompts_file!r} does not exist; give a .tsv with "
                           f"a Prompt column, a .txt with one prompt per line, or partiprompts")
        out += load_prompts(prompts_file, limit=max_prompts)
    if not out:
        raise ZooError("no prompts: give --prompt=\"a red circle\" (repeatable) or "
                       "--prompts_file=<.tsv, .txt or partiprompts>")
    for p in out:
        if not p.text.strip():
            raise ZooError(f"empty prompt ({p.source or 'prompt'}); every prompt needs text")
    return out


def write_samples(pipe, prompts, output_dir, num_samples, seed, batch_size, progress=True):
    """Generates every prompt's samples into `output_dir`; returns the rows written."""
    import numpy as np
    from PIL import Image

    from zoo.eval.gallery import GalleryEntry, write_gallery

    os.makedirs(os.path.join(output_dir, "images"), exist_ok=True)
    rows = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(prompts), desc="sampling", unit="prompt", file=sys.stderr)
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        ids = list(range(start, start + len(chunk)))
        images, scores = pipe([p.text for p in chunk], prompt_ids=ids,
                              num_samples=num_samples, seed=seed)
        for j, (i, p) in enumerate(zip(ids, chunk)):
            names = []
            for s in range(num_samples):
                name = os.path.join("images", f"p{i:04d}_s{s}.png")
                pixels = np.clip(np.round(images[j, s] * 255.0), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(os.path.join(output_dir, name))
                names.append(name)
            row = {"index": i, **p.to_json(), "prompt": p.text, "images": names}
            row.pop("text", None)
            if scores is not None:
                row["scores"] = [float(x) for x in scores[j]]
            rows.append(row)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    with open(os.path.join(output_dir, "samples.jsonl"), "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    entries = [GalleryEntry(prompt=r["prompt"], images=r["images"], scores=r.get("scores"),
                            category=r.get("category"), challenge=r.get("challenge"))
               for r in rows]
    write_gallery(output_dir, entries, title="zoo-sample")
    return rows


def sample_run(model_dir, prompts=(), prompts_file=None, max_prompts=None, output_dir=None, *,
               num_samples=4, seed=0, batch_size=8, temperature=None, top_k=None, top_p=None,
               guidance_scale=None, xla=False, weights=None, jacobi_window=0, scorer=None,
               upsampler_dir=None, step=None, distribution=None, progress=True,
               tool="zoo-sample"):
    """Samples the prompts with the run in `model_dir`; returns (rows, output_dir, settings).

    temperature, top_k, top_p, guidance_scale: None takes the run's recorded setting (else
    the default); the settings used are logged at start. xla, weights, jacobi_window: how the
    decode loop runs (`zoo.models.sampling.Sampler`; weights None: its default), logged at
    start as resolved.
    """
    from zoo.errors import ZooError
    from zoo.models import sampling_settings
    from zoo.models.sampling import TextToImage
    if not model_dir:
        raise ZooError("--model_dir is required: the directory of a `parti` training run")
    if batch_size < 1:
        raise ZooError(f"--batch_size must be >= 1, got {batch_size}")
    prompt_list = read_prompts(list(prompts), prompts_file, max_prompts)
    settings = sampling_settings.resolve(model_dir, temperature=temperature, top_k=top_k,
                                         top_p=top_p, guidance_scale=guidance_scale)
    log.info("%s: sampling settings: %s", tool, settings.describe())
    pipe = TextToImage.from_model_dir(
        model_dir, step=step, upsampler_dir=upsampler_dir, scorer=scorer, jit_compile=xla,
        weights=weights, jacobi_window=jacobi_window, distribution=distribution,
        **settings.values)
    sampler = pipe.sampler  # what decoding actually uses (the defaults resolved)
    log.info("%s: decoding: weights %s, jacobi_window %d, xla %s", tool, sampler.weights,
             sampler.jacobi_window, "on" if sampler.jit_compile else "off")
    output_dir = output_dir or os.path.join(model_dir, "samples")
    rows = write_samples(pipe, prompt_list, output_dir, num_samples, seed, batch_size,
                         progress=progress)
    return rows, output_dir, settings
