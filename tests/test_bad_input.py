"""Bad-input rows of the README table that no other test file covers directly."""

import pytest

from zoo.errors import ZooError


def test_empty_prompt_is_an_error():
    from zoo.models.sampling import check_prompts
    with pytest.raises(ZooError, match="empty"):
        check_prompts(["a red circle", "  "])
    with pytest.raises(ZooError, match="empty"):
        check_prompts("")
    assert check_prompts("a red circle") == ["a red circle"]


def test_non_utf8_prompt_bytes_are_an_error():
    from zoo.models.sampling import check_prompts
    with pytest.raises(ZooError, match="UTF-8"):
        check_prompts([b"\xff\xfe red"])


@pytest.mark.parametrize("kind,name,args", [
    ("model", "parti_tiny", {"width": 0}),
    ("model", "parti_tiny", {"decoder_layers": -1}),
    ("image_tokenizer", "vit_vqgan_tiny", {"patch_size": 0}),
    ("text_encoder", "parti_encoder", {"heads": 0}),
    ("text_encoder", "parti_encoder", {"max_length": True}),
])
def test_zero_or_negative_sizes(kind, name, args):
    import zoo
    with pytest.raises(ZooError) as e:
        zoo.create(kind, name, **args)
    key = next(iter(args))
    assert key in str(e.value)


def test_parti_encoder_sizes_named_in_one_line_and_numpy_ints_kept_plain():
    import json

    import numpy as np

    import zoo
    with pytest.raises(ZooError) as e:
        zoo.create("text_encoder", "parti_encoder", width=32, heads=2, mlp_dim=2.5)
    assert str(e.value) == "parti_encoder.mlp_dim must be a positive integer, got 2.5"
    encoder = zoo.create("text_encoder", "parti_encoder", vocab_size=np.int64(40),
                         width=np.int32(32), layers=1, heads=2, mlp_dim=64, max_length=8)
    config = encoder.get_config()
    assert json.loads(json.dumps({k: config[k] for k in ("vocab_size", "width")})) == {
        "vocab_size": 40, "width": 32}
