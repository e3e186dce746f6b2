"""teacher_training.images: a quick teacher on the first N training images (make check-recipes trains such teachers)."""

from __future__ import annotations

import pytest

from conftest import tiny_config


def test_the_teacher_trains_on_the_first_images_only(tmp_path):
    from datafree.config import ConfigError
    from datafree.supervised import train_teacher

    # 256 stand-in images make 4 batches of 64; the first 32 make none, which is refused before anything is written
    config = tiny_config(tmp_path, teacher_training={"epochs": 1, "batch_size": 64, "images": 32})
    with pytest.raises(ConfigError, match="teacher_training.images"):
        train_teacher(config)
    assert not (tmp_path / "teacher.safetensors").exists()
    config.teacher_training.images = 64  # one batch: trains and records its statistics
    result = train_teacher(config)
    assert (tmp_path / "teacher.safetensors").exists() and 0.0 <= result["teacher_acc"] <= 1.0


def test_bad_values_are_refused():
    from datafree.config import ConfigError, from_dict, validate

    for key, value in (("images", -1), ("route_every", 0)):
        with pytest.raises(ConfigError, match=f"teacher_training.{key}"):
            validate(from_dict({"preset": "dafl", "teacher_training": {key: value}}))
