"""The caption grammar: the words and phrases a scene is described with (see the package
docstring), and `write_caption`, which draws one caption for a scene."""

import numpy as np

from zoo.data.shapes.scenes import Group, Scene

_POSITION_PHRASES = {
    "top left": ("at the top left", "in the top left corner", "in the upper left"),
    "top": ("at the top", "at the top centre", "in the top middle"),
    "top right": ("at the top right", "in the top right corner", "in the upper right"),
    "left": ("on the left", "on the left side", "at the left"),
    "centre": ("in the centre", "in the middle", "in the center"),
    "right": ("on the right", "on the right side", "at the right"),
    "bottom left": ("at the bottom left", "in the bottom left corner", "in the lower left"),
    "bottom": ("at the bottom", "at the bottom centre", "in the bottom middle"),
    "bottom right": ("at the bottom right", "in the bottom right corner", "in the lower right"),
}
_SIZE_WORDS = {"small": ("small", "little"), "large": ("large", "big")}
_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_PREFIXES = ("", "", "", "a picture of ", "an image of ", "there is ")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _group_phrase(group: Group, rng: np.random.Generator) -> str:
    words = []
    if group.size is not None:
        options = _SIZE_WORDS[group.size]
        words.append(options[int(rng.integers(len(options)))])
    words += [group.colour, group.shape + ("s" if group.count > 1 else "")]
    if group.count == 1:
        text = _article(words[0]) + " " + " ".join(words)
    else:
        text = _NUMBERS[group.count] + " " + " ".join(words)
    if group.position is not None:
        options = _POSITION_PHRASES[group.position]
        text += " " + options[int(rng.integers(len(options)))]
    return text


def write_caption(scene: Scene, rng: np.random.Generator) -> str:
    order = rng.permutation(len(scene.groups))
    phrases = [_group_phrase(scene.groups[i], rng) for i in order]
    if len(phrases) == 1:
        body = phrases[0]
    else:
        body = ", ".join(phrases[:-1]) + " and " + phrases[-1]
    prefix = _PREFIXES[int(rng.integers(len(_PREFIXES)))]
    if prefix == "there is " and scene.groups[int(order[0])].count > 1:
        prefix = "there are "
    return prefix + body
