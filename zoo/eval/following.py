"""Caption following: does the reranker pick the sample drawn for a caption over the samples
drawn for the other captions?

    result = caption_following(similarity, prompts)   # similarity [P, S, P], see below
    result["rate"], result["chance"]                   # e.g. 0.41 against 0.10 for 10 prompts

For P distinct prompts with S samples each, `similarity[j, s, i]` is the reranker's score of
sample s of prompt j with the caption of prompt i. Caption i *follows* at sample index s when
its own sample scores highest for it among sample s of every prompt:

    similarity[i, s, i] > similarity[j, s, i] for every other prompt j (with another text)

The rate averages this over captions and sample indices; picking a sample at random would
follow with probability 1 / (number of prompts compared), the chance level reported with it.
It asks of samples what retrieval accuracy asks of real images, so the two read side by side:
the reranker's retrieval accuracy on real held-out pairs is the ceiling a perfect generator
would reach under this judge.
"""

from typing import Any, Dict, Sequence

import numpy as np

from zoo.errors import ZooError


def caption_following(similarity, prompts: Sequence[str], sample_index=None) -> Dict[str, Any]:
    """{'rate', 'chance', 'prompts', 'samples', 'per_prompt'} from similarity [P, S, P].

    Args:
        similarity: scores, see the module docstring.
        prompts: the P prompt texts (prompts with the same text are never compared).
        sample_index: None for every sample index, or one index (e.g. 0: the reranker's first
            picks when each prompt's samples are ordered best first).
    """
    sim = np.asarray(similarity, np.float64)
    p = len(prompts)
    if sim.ndim != 3 or sim.shape[0] != p or sim.shape[2] != p:
        raise ZooError(f"caption following needs similarities [P, S, P] for P={p} prompts, got "
                       f"shape {sim.shape}")
    if sample_index is not None:
        sim = sim[:, sample_index:sample_index + 1]
    texts = np.asarray([str(t) for t in prompts], dtype=object)
    others = texts[:, None] != texts[None, :]  # [j, i]: prompt j is a rival of caption i
    rivals = others.sum(axis=0)
    if p < 2 or not rivals.any():
        raise ZooError("caption following needs at least 2 prompts with different texts")
    # own[i, s] = sim[i, s, i]; best rival[i, s] = max over rival j of sim[j, s, i].
    idx = np.arange(p)
    own = sim[idx, :, idx]  # [P, S]
    masked = np.where(others[:, None, :], sim, -np.inf)  # [j, s, i]
    rival = masked.max(axis=0).T  # [i, s]
    follows = own > rival
    keep = rivals > 0
    per_prompt = follows.mean(axis=1)
    return {"rate": float(follows[keep].mean()),
            "chance": float(np.mean(1.0 / (rivals[keep] + 1.0))),
            "prompts": int(keep.sum()), "samples": int(follows[keep].size),
            "per_prompt": [float(x) for x in per_prompt]}


def similarity_matrix(similarity_fn, images, prompts: Sequence[str]) -> np.ndarray:
    """[P, S, P] scores from `similarity_fn(images [N, H, W, 3], texts [P]) -> [N, P]` for
    images [P, S, H, W, 3]."""
    images = np.asarray(images, np.float32)
    p, s = images.shape[:2]
    flat = images.reshape((p * s,) + images.shape[2:])
    scores = np.asarray(similarity_fn(flat, list(prompts)), np.float64)
    if scores.shape != (p * s, p):
        raise ZooError(f"the scorer's similarity returned shape {scores.shape}, expected "
                       f"{(p * s, p)}")
    return scores.reshape(p, s, p)
