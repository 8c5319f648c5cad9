"""Built-in `synthetic_shapes` data: procedural coloured shapes with English captions, and a checker.

Every example is a pure function of (seed, split, index): no download, random access, the same
bytes on every machine. The images are made to be learnable by a tiny text-to-image model in
minutes on a CPU (few clearly distinct colours, a few shapes on a 3x3 grid, a black background),
and the checker tells whether an image (generated or produced by a model) shows what its caption
says.

Scene: 1..`max_objects` objects, each in its own cell of a 3x3 grid (centred in the cell, plus
optional `jitter`), drawn with anti-aliased edges on black. Objects come in groups: a *single*
object (its position is named in the caption) or, with probability `count_probability`, one
*counted* group of 2..`max_count` identical objects (position not named). Groups in one scene
differ in (colour, shape).

Caption grammar (one caption per image; words in quotes are literal):

    caption  := [prefix] group {", " group} [" and " group]
    prefix   := "a picture of " | "an image of " | "there is " | "there are "
    group    := single | counted
    single   := article [size " "] colour " " shape " " position
    counted  := number " " [size " "] colour " " shape "s"
    article  := "a" | "an"
    number   := "two" | "three" | ... | "nine"
    size     := "small" | "little" | "large" | "big"      (only when `sizes` has two entries)
    colour   := "red" | "green" | "blue" | "yellow" | "purple" | "white"
    shape    := "circle" | "square" | "triangle" | "diamond"
    position := "at the top left" | "in the top left corner" | "in the upper left"
              | "at the top" | "at the top centre" | "at the top right" | ...
              | "on the left" | "on the left side" | "in the centre" | "in the middle"
              | "on the right" | "at the bottom left" | "in the lower right" | ...

Examples: "a red circle at the top left", "two blue squares", "a picture of a small green
triangle on the right and a big white circle in the middle".

Splits: `train`, `validation` and `test` use disjoint random streams (seed, split, index).
`heldout_percent` of all caption *meanings* (the scene as the caption describes it: groups with
count, colour, shape, size and named position; phrasing aside) never occur in train or
validation; `test` draws only from them, so test captions describe combinations a model has not
seen. With `holdout_pairs` (e.g. (("yellow", "triangle"),)), those colour-shape pairs never occur
in train/validation/test and the `compositional` split contains only scenes that use them.

The checker (`check`, `check_features`) works on generated images and on model outputs (soft,
noisy reconstructions): it segments the image by colour (each pixel is matched to the palette
colour whose black-to-colour ray it lies closest to, so anti-aliased or blurred edges keep their
colour, and its position along the ray is its coverage), finds connected components, and
describes each by its cell (position, from the centroid), its extent (size, from the covered
area) and its shape: the shape whose anti-aliased drawing, sharp or blurred, registered to the
component's area and centroid, best overlaps the component's coverage (soft IoU). Then it
matches the objects the caption describes to the objects found.

Modules, one job each: `config` (vocabulary, ShapesConfig), `scenes` (Group, Obj, Scene, the
scene sampler), `grammar` (writing captions), `examples` (sample/caption/generate per split),
`drawing` (render), `parser` (parse_caption), `checker` (detect, check, check_features),
`dataset` (the registered `synthetic_shapes`), `tfds_builder` (its TFDS builder). Everything
is importable from `zoo.data.shapes`.
"""

from zoo.data.shapes.checker import (  # noqa: F401
    FEATURES, Detected, check, check_features, detect)
from zoo.data.shapes.config import (  # noqa: F401
    CELL_NAMES, COLOURS, DEFAULT_SHAPES, GRID, POSITIONS, SHAPES, SIZES, SPLITS, ShapesConfig)
from zoo.data.shapes.dataset import SyntheticShapes  # noqa: F401
from zoo.data.shapes.drawing import render  # noqa: F401
from zoo.data.shapes.examples import caption, generate, sample  # noqa: F401
from zoo.data.shapes.parser import parse_caption  # noqa: F401
from zoo.data.shapes.scenes import Group, Obj, Scene  # noqa: F401
from zoo.data.shapes.tfds_builder import (  # noqa: F401
    SyntheticShapesBuilder, SyntheticShapesConfig)

SyntheticShapesBuilder.__doc__ = (
    "TFDS builder of synthetic_shapes (`tfds.load('synthetic_shapes/64')` after "
    "`import zoo.data`).\n\n" + (__doc__ or ""))
