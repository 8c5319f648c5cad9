"""Sampling settings that fit a run: a small grid measured on held-out captions, best recorded.

    best, table = choose_settings("runs/mine/parti", prompts, judge=following_judge(scorer))
    # best = {'temperature': 0.7, 'top_k': 0, 'top_p': 1.0, 'guidance_scale': 2.0}

The grid is searched one axis at a time, 6 points in all: temperature 1.0 / 0.7 / 0.5 (top-k
off, guidance 1.2), then guidance 2 and 3 at the best temperature, then top-k 32 at the best of
those. A `judge(images [P, S, H, W, 3], prompts) -> float` scores each point (higher is better):
the caption-following rate under the reranker for a folder, the shapes checker's acceptance on
the demo. The samples use seed 1, the final evaluation seed 0, so the evaluation does not
reuse the very samples the settings were chosen on. `record` writes the best to the run's
`sampling.json` with the whole table and the decode weights the samples were drawn with, where
zoo-sample / zoo-eval / zoo-export find it.
"""

from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from zoo.eval.prompts import Prompt
from zoo.models import sampling_settings

Judge = Callable[[np.ndarray, List[str]], float]
TEMPERATURES = (1.0, 0.7, 0.5)
GUIDANCE = (2.0, 3.0)
TOP_K = (32,)
SEED = 1


def shapes_judge(images, prompts) -> float:
    """Share of samples the synthetic-shapes checker accepts."""
    from zoo.eval.shapes_eval import shapes_acceptance
    flat = images.reshape((-1,) + images.shape[2:])
    texts = [p for p in prompts for _ in range(images.shape[1])]
    return float(shapes_acceptance(texts, flat)["acceptance"])


def following_judge(scorer) -> Judge:
    """The caption-following rate under `scorer` (its `similarity(images, texts)`)."""
    from zoo.eval.following import caption_following, similarity_matrix

    def judge(images, prompts):
        return caption_following(similarity_matrix(scorer.similarity, images, prompts),
                                 prompts)["rate"]
    return judge


def _sample(pipe, prompts: Sequence[str], settings, num_samples, batch_size):
    from zoo.models.sampling import Sampler
    pipe.sampler = Sampler(pipe.model, use_cache=pipe.sampler.use_cache,
                           weights=pipe.sampler.weights, **settings)
    out = []
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start:start + batch_size])
        images, _ = pipe(chunk, prompt_ids=list(range(start, start + len(chunk))),
                         num_samples=num_samples, seed=SEED)
        out.append(images)
    return np.concatenate(out)


def choose_settings(parti_dir: str, prompts: Sequence[Prompt], judge: Judge, *,
                    num_samples: int = 4, quick: bool = False, batch_size: int = 16,
                    log: Callable[[str], None] = lambda line: None
                    ) -> Tuple[Dict, List[Dict]]:
    """(best settings, [{settings..., 'score'}] in the order measured). The samples are
    decoded with the sampler's default weights (each table row records them)."""
    from zoo.models.sampling import TextToImage
    pipe = TextToImage.from_model_dir(parti_dir)
    texts = [p.text for p in prompts]
    table: List[Dict] = []
    cache: Dict[Tuple, float] = {}

    def score(**changes):
        settings = {**best, **changes}
        key = tuple(settings[k] for k in sampling_settings.KEYS)
        if key not in cache:
            images = _sample(pipe, texts, settings, num_samples, batch_size)
            cache[key] = float(judge(images, texts))
            table.append({**settings, "score": cache[key], "weights": pipe.sampler.weights})
            log(" ".join(f"{k} {settings[k]:g}" for k in sampling_settings.KEYS)
                + f": {cache[key]:.1%}")
        return cache[key]

    best = dict(sampling_settings.DEFAULTS)
    axes = [("temperature", TEMPERATURES[::2] if quick else TEMPERATURES)]
    if not quick:
        axes += [("guidance_scale", (best["guidance_scale"],) + GUIDANCE),
                 ("top_k", (0,) + TOP_K)]
    for key, values in axes:
        scores = {v: score(**{key: v}) for v in values}
        best[key] = max(values, key=lambda v: (scores[v], -values.index(v)))
    return best, table


def record(parti_dir: str, best: Dict, table: List[Dict], judged_by: str,
           prompts: Sequence[Prompt], num_samples: int) -> str:
    weights = sorted({str(row["weights"]) for row in table if "weights" in row})
    measured = {"chosen_by": judged_by, "prompts": [p.text for p in prompts],
                "samples_per_prompt": num_samples, "seed": SEED,
                "weights": ", ".join(weights) or None, "grid": table}
    return sampling_settings.record(parti_dir, best, measured)
