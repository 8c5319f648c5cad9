"""Renamed options (zoo.compat): runs and saved Keras configs written before `*_config` became
`*_options` and ViT-VQGAN's `dim` became `width` still load, resume and initialise other runs."""

import json
import shutil

import numpy as np
import pytest

from zoo import compat


def test_upgrade_renames_options_at_any_depth():
    old = {"task": "parti", "task_config": {
        "model_options": {"text_encoder": "pretrained",
                          "text_encoder_config": {"model_dir": "runs/mlm",
                                                  "encoder_config": {"width": 64}}},
        "image_tokenizer": "vit_vqgan_tiny",
        "image_tokenizer_options": {"dim": 128, "decoder_dim": 64, "mlp_dim": 256}}}
    new = compat.upgrade(old)
    model = new["task_config"]["model_options"]
    assert model["text_encoder_options"] == {"model_dir": "runs/mlm",
                                             "encoder_options": {"width": 64}}
    assert new["task_config"]["image_tokenizer_options"] == {
        "width": 128, "decoder_width": 64, "mlp_dim": 256}
    assert "text_encoder_config" in old["task_config"]["model_options"]  # a copy, not in place
    # `dim` is renamed only for ViT-VQGAN tokenizers: another component may take a `dim`.
    other = {"tokenizer": "my_plugin_tokenizer", "tokenizer_options": {"dim": 3}}
    assert compat.upgrade(other) == other
    assert compat.upgrade([{"dataset_config": {}}]) == [{"dataset_options": {}}]
    with pytest.raises(ValueError, match="both 'encoder_config'"):
        compat.upgrade({"encoder_config": {}, "encoder_options": {}})


def _rewrite_run(model_dir, edit):
    path = model_dir / "run.json"
    info = json.loads(path.read_text())
    edit(info["task_config"])
    path.write_text(json.dumps(info))


def test_a_tokenizer_run_written_with_dim_loads_resumes_and_initialises(tmp_path):
    from shapes_standin import shapes_dataset, shapes_images
    from zoo.train.loop import train
    from zoo.train.tokenizer_task import ViTVQGANTask, load_tokenizer

    def task(**kw):
        t = ViTVQGANTask(tokenizer="vit_vqgan_micro", tokenizer_options={"width": 16},
                         feature_network="tiny_conv",
                         feature_network_options={"channels": [8]}, adversarial_weight=0.0,
                         warmup_steps=1, total_steps=10, **kw)
        t.dataset = lambda batch_size, seed, start_step=0: shapes_dataset(
            batch_size, 16, seed, start_step)
        return t

    run = tmp_path / "tok"
    first = train(task=task(), model_dir=str(run), steps=2, batch_size=4, seed=0,
                  checkpoint_every=2, summary_every=0, image_summary_every=0, progress=False)
    held = shapes_images(4, 16, 1)
    codes = np.asarray(first.task.tokenizer.encode(held))

    def to_dim(cfg):
        opts = cfg["tokenizer_options"]
        opts["dim"] = opts.pop("width")

    _rewrite_run(run, to_dim)
    assert '"dim": 16' in (run / "run.json").read_text()
    tok = load_tokenizer(str(run))  # rebuilt from the old run.json, weights restored
    assert tok.width == 16
    np.testing.assert_array_equal(np.asarray(tok.encode(held)), codes)
    # Resuming with today's names is the same run (no "settings changed" refusal).
    again = train(task=task(), model_dir=str(run), steps=4, batch_size=4, seed=0,
                  checkpoint_every=2, summary_every=0, image_summary_every=0, progress=False)
    assert again.step == 4
    # A decoder fine-tune initialised from the old run reads its encoder settings.
    ft = ViTVQGANTask(init_from=str(run), feature_network="tiny_conv",
                      feature_network_options={"channels": [8]})
    assert ft.tokenizer_options["width"] == 16 and "dim" not in ft.tokenizer_options


def test_an_mlm_run_written_with_config_names_loads_and_initialises(tmp_path):
    from text_encoder_helpers import mlm_run
    from zoo.text_encoders import pretrained
    from zoo.train.loop import load_task

    source, result = mlm_run()
    run = tmp_path / "mlm"
    shutil.copytree(source, run)

    def to_config(cfg):
        for name in ("encoder", "tokenizer", "dataset"):
            cfg[f"{name}_config"] = cfg.pop(f"{name}_options")

    _rewrite_run(run, to_config)
    assert '"encoder_config"' in (run / "run.json").read_text()
    task = load_task(str(run))
    assert task.encoder_options == result.task.encoder_options
    encoder = pretrained.pretrained(model_dir=str(run))
    want = pretrained.relative_weights(result.task.model.text_encoder)
    got = pretrained.relative_weights(encoder)
    assert set(got) == set(want)
    for key, value in want.items():
        np.testing.assert_array_equal(got[key].numpy(), value.numpy(), err_msg=key)


def test_keras_configs_saved_with_old_names_load():
    from zoo.layers.vit import ViTStack
    from zoo.models.parti import Parti
    from zoo.registry import IMAGE_TOKENIZERS, MODELS
    from zoo.tokenizers.vit_vqgan import ViTVQGAN

    tok = IMAGE_TOKENIZERS.create("vit_vqgan_micro", decoder_width=16)
    old = {k: v for k, v in tok.get_config().items()}
    old["dim"], old["decoder_dim"] = old.pop("width"), old.pop("decoder_width")
    back = ViTVQGAN.from_config(old)
    assert (back.width, back.decoder_width) == (32, 16)
    stack = ViTStack(4, 1, 8, 2, 16)
    config = stack.get_config()
    config["dim"] = config.pop("width")
    assert ViTStack.from_config(config).width == 8
    parti = MODELS.create("parti_micro")
    config = parti.get_config()
    config["text_encoder_config"] = config.pop("text_encoder_options")
    assert Parti.from_config(config).get_config() == parti.get_config()
