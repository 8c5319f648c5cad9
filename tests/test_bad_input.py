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
])
def test_zero_or_negative_sizes(kind, name, args):
    import zoo
    with pytest.raises(ZooError) as e:
        zoo.create(kind, name, **args)
    key = next(iter(args))
    assert key in str(e.value)
