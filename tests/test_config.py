import argparse
from pathlib import Path

import pytest

from datafree.config import Config, ConfigError, PieceConfig, load_toml, validate
from datafree.config.overrides import add_override_arguments, apply_overrides, parse_args

ROOT = Path(__file__).resolve().parents[1]


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_override_arguments(parser)
    return parser.parse_args(list(argv))


def test_every_recipe_in_runs_loads_and_validates():
    recipes = sorted((ROOT / "runs").glob("*.toml"))
    assert recipes, "runs/ has no recipe"
    for recipe in recipes:
        config = apply_overrides(load_toml(recipe), parse())
        assert config.train.steps > 0 and config.distill


def test_cli_overrides_are_typed():
    config = apply_overrides(Config(), parse("--train.steps", "7", "--runtime.channels_last", "false",
                                             "--generator.lr", "0.5", "--student.milestones", "0.3,0.6",
                                             "--distill", '[{"name": "kd", "params": {"temperature": 4}}]'))  # fmt: skip
    assert config.train.steps == 7 and config.runtime.channels_last is False and config.generator.lr == 0.5
    assert config.student.milestones == [0.3, 0.6]
    assert config.distill[0].params == {"temperature": 4.0}


def test_bad_override_type_names_the_key():
    with pytest.raises(ConfigError, match="train.steps"):
        apply_overrides(Config(), parse("--train.steps", "many"))


def test_help_lists_every_value(capsys):
    parser = argparse.ArgumentParser()
    add_override_arguments(parser)
    help_text = parser.format_help()
    for key in ("--train.steps", "--generator.bn_eps", "--synthesis", "--teacher.kind", "--student.wrap"):
        assert key in help_text
    assert "--teacher_training.epochs" not in help_text  # train_dfl.py does not read teacher training


@pytest.mark.e2e
def test_train_teacher_help_lists_teacher_training_and_not_the_loop(capsys):
    import train_teacher

    with pytest.raises(SystemExit):
        train_teacher.main(["--help"])
    text = capsys.readouterr().out
    assert "--teacher_training.epochs" in text and "--train.steps" not in text


def test_toml_values_are_type_checked_like_command_line_values(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[train]\nsteps = "ten"\n')
    with pytest.raises(ConfigError, match=r"train.steps expects a int, got 'ten'"):
        load_toml(recipe)
    recipe.write_text('[train]\nfresh_batches = "no"\n')  # a string is not a bool (it used to turn them ON)
    with pytest.raises(ConfigError, match="train.fresh_batches expects a bool"):
        load_toml(recipe)
    recipe.write_text('[train]\nlog_every = 3.5\n')
    with pytest.raises(ConfigError, match="log_every expects a int"):
        load_toml(recipe)
    recipe.write_text('[generator]\nlr = 1\n')  # an int where a float is expected is fine
    assert load_toml(recipe).generator.lr == 1.0
    with pytest.raises(ConfigError, match="is a directory"):
        load_toml(tmp_path)


def test_old_recipe_layout_gets_errors_that_say_where_keys_went(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text("[teacher]\nepochs = 3\n")
    with pytest.raises(ConfigError, match=r"moved to \[teacher_training\]"):
        load_toml(recipe)
    recipe.write_text("[synthesis]\noh = 1.0\n")
    with pytest.raises(ConfigError, match=r"\[\[synthesis\]\] table per term"):
        load_toml(recipe)


def test_synthesis_overrides_set_a_terms_weight_or_parameter():
    parser = argparse.ArgumentParser()
    add_override_arguments(parser)
    args = parse_args(parser, ["--synthesis.tv", "0.5", "--synthesis.entropy.log=ln", "--synthesis.onehot", "2"])
    config = apply_overrides(Config(), args)
    weights = {t.name: t.weight for t in config.synthesis}
    assert weights == {"onehot": 2.0, "activation": 0.1, "entropy": 5.0, "tv": 0.5}
    assert next(t for t in config.synthesis if t.name == "entropy").params == {"log": "ln"}
    assert Config().synthesis[0].weight == 1.0  # the defaults were not mutated
    with pytest.raises(SystemExit):
        parse_args(parser, ["--nonsense", "1"])


def test_extra_steps_pieces_need_extra_steps():
    from datafree.build import check_batches

    for piece in ("fresh", "replay", "pool"):
        config = Config()
        config.batches = [PieceConfig(piece)]
        with pytest.raises(ConfigError, match=f"'{piece}' serves the EXTRA student updates of a step, but "
                                              "train.student_steps = 1 has none"):  # fmt: skip
            check_batches(config)
    config = Config()
    config.train.sample_every = 0
    with pytest.raises(ConfigError, match="sample_every must be > 0"):
        validate(config)


def test_the_old_train_keys_of_the_students_batches_become_pieces():
    """[train] replay / fresh_batches / fresh_batch_size / pool / pool_share / augment_* (the spelling before
    [[batches]]): each does what it did, on top of the preset's pieces."""
    from datafree.config import from_dict

    default = from_dict({}).batches  # the default preset: flipped / shifted, fresh batches of 64
    assert [(p.name, p.params) for p in default] == [("augment", {"flip": True, "shift": 2}), ("fresh", {"size": 64})]
    cases = [
        ({"replay": 4, "fresh_batches": False}, [("augment", {"flip": True, "shift": 2}), ("replay", {"size": 4})]),
        ({"fresh_batch_size": 0}, [("augment", {"flip": True, "shift": 2}), ("fresh", {"size": 0})]),
        ({"augment_flip": False, "augment_shift": 0}, [("fresh", {"size": 64})]),  # nothing on: the piece goes
        ({"pool": 128, "pool_share": 0.25, "augment_blur": 1.0},
         [("augment", {"flip": True, "shift": 2, "blur": 1.0}), ("fresh", {"size": 64}), ("pool", {"size": 128, "share": 0.25})]),
    ]  # fmt: skip
    for train, expected in cases:
        assert [(p.name, p.params) for p in from_dict({"train": train}).batches] == expected, train
    dafl = from_dict({"preset": "dafl", "train": {"augment_mix": 0.5, "fresh_batches": True}})
    assert [(p.name, p.params) for p in dafl.batches] == [("fresh", {}), ("augment", {"mix": 0.5})]
    assert from_dict({"preset": "dafl", "train": {"fresh_batch_size": 8}}).batches == []  # nothing to size: as before


def test_a_recipe_may_not_spell_the_students_batches_both_ways(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[train]\nreplay = 4\n\n[[batches]]\nname = "fresh"\n')
    with pytest.raises(ConfigError, match=r"\[train\] \['replay'\] and \[\[batches\]\] both set the student's batches"):
        load_toml(recipe)
    recipe.write_text('[train]\nstudent_steps = 4\n\n[[batches]]\nname = "pool"\nparams = {size = 100, share = 0.5}\n')
    config = load_toml(recipe)
    assert [(p.name, p.params) for p in config.batches] == [("pool", {"size": 100, "share": 0.5})]  # replaces the preset's


def test_command_line_spellings_of_the_students_batches():
    from datafree.config.overrides import add_override_arguments, apply_overrides, parse_args

    parser = argparse.ArgumentParser()
    add_override_arguments(parser)
    base = Config()
    args = parse_args(parser, ["--train.pool", "100", "--train.student_steps", "4"])  # the old spelling
    assert [(p.name, p.params) for p in apply_overrides(base, args).batches] == [("pool", {"size": 100})]
    from datafree.config import from_dict

    default = from_dict({})
    args = parse_args(parser, ["--batches.fresh", "off", "--batches.pool.size", "64", "--batches.augment.blur=0.5"])
    assert [(p.name, p.params) for p in apply_overrides(default, args).batches] == [
        ("augment", {"flip": True, "shift": 2, "blur": 0.5}), ("pool", {"size": 64})]
    assert [p.name for p in default.batches] == ["augment", "fresh"]  # the base config is left as it was
    args = parse_args(parser, ["--batches", '[{"name": "replay", "params": {"size": 3}}]'])
    assert [(p.name, p.params) for p in apply_overrides(default, args).batches] == [("replay", {"size": 3})]
    with pytest.raises(ConfigError, match="--batches.pool takes only 'off'"):
        apply_overrides(default, parse_args(parser, ["--batches.pool", "7"]))


def test_the_old_keys_of_the_loops_callbacks_become_callbacks(tmp_path):
    from datafree.config import from_dict
    from datafree.config.overrides import add_override_arguments, apply_overrides, parse_args

    default = from_dict({})
    assert [(c.name, c.params) for c in default.callbacks] == [("blend", {"share": 0.25}), ("precise_bn", {"batches": 20})]
    old = from_dict({"train": {"ema_decay": 0.99, "precise_bn": 0}, "generator": {"blend": 0.5, "quota": 0.3}})
    assert [(c.name, c.params) for c in old.callbacks] == [("blend", {"share": 0.5}), ("ema", {"decay": 0.99}),
                                                           ("quota", {"share": 0.3})]  # fmt: skip
    recipe = tmp_path / "r.toml"
    recipe.write_text('[generator]\nblend = 0.5\n\n[[callbacks]]\nname = "ema"\n')
    with pytest.raises(ConfigError, match=r"\['generator.blend'\] and \[\[callbacks\]\] both set the loop's callbacks"):
        load_toml(recipe)
    parser = argparse.ArgumentParser()
    add_override_arguments(parser)
    args = parse_args(parser, ["--train.ema_decay", "0.9", "--generator.blend", "0", "--callbacks.lr_restart.cycles", "3"])
    assert [(c.name, c.params) for c in apply_overrides(default, args).callbacks] == [
        ("precise_bn", {"batches": 20}), ("ema", {"decay": 0.9}), ("lr_restart", {"cycles": 3})]
    args = parse_args(parser, ["--callbacks", "[]"])
    assert apply_overrides(default, args).callbacks == []


def test_every_registered_piece_and_callback_is_documented_with_its_params():
    """The recipes page lists each [[batches]] piece and [[callbacks]] callback by name: derived from the registries,
    so a new one without its row fails here."""
    from pathlib import Path

    from datafree.batches import list_batches
    from datafree.callbacks import list_callbacks

    page = (Path(__file__).resolve().parents[1] / "docs" / "recipes.md").read_text()
    missing = [name for name in [*list_batches(), *list_callbacks()] if f"| `{name}` |" not in page]
    assert not missing, f"docs/recipes.md has no row for {missing}"


def test_the_flat_config_for_trackers_keeps_types():
    """Trackers get numbers as numbers (a hyper-parameter table can sort and plot them), not their strings."""
    from datafree.config import from_dict

    flat = from_dict({}).flat()
    assert flat["train.steps"] == 1500 and isinstance(flat["train.steps"], int)
    assert flat["synthesis.onehot.weight"] == 1.0 and flat["synthesis.entropy.params.log"] == "log10"
    assert flat["batches.fresh.params.size"] == 64 and flat["callbacks.precise_bn.params.batches"] == 20
    assert flat["generator.conditional"] is True and flat["synthesis.onehot.milestones"] == "[0.5]"  # a list: JSON
    assert all(isinstance(v, (bool, int, float, str)) for v in flat.values())


@pytest.mark.slow
def test_a_run_logs_to_tensorboard_with_the_typed_config(tmp_path):
    from datafree.pipeline import distill_from_config
    from tests.conftest import save_random_teacher, tiny_config

    config = tiny_config(tmp_path, train={"steps": 2, "eval_every": 2, "trackers": ["tensorboard"]})
    save_random_teacher(config)
    distill_from_config(config)
    events = list((tmp_path / "run").rglob("events.out.tfevents.*"))
    assert events and any(e.stat().st_size > 0 for e in events)


def test_the_runtime_keys_moved_from_train_keep_working_in_every_spelling(tmp_path):
    """[train] mixed_precision, channels_last, compile, keep_host_memory, label_precision, fold_batchnorm live in
    [runtime] now: recipes, old run folders' config.json, command lines and the Python call still say them the old
    way; saying one both ways is refused naming [runtime]."""
    import json

    import torch

    from datafree.api import distill_datafree
    from datafree.config import ConfigError, RuntimeConfig, TrainConfig, from_dict, load_toml
    from datafree.config.overrides import add_override_arguments, parse_args
    from datafree.config.spellings import RUNTIME_KEYS

    assert set(RUNTIME_KEYS) == {f for f in RuntimeConfig.__dataclass_fields__} and len(RUNTIME_KEYS) == 6
    assert not set(RUNTIME_KEYS) & set(TrainConfig.__dataclass_fields__)
    assert len(TrainConfig.__dataclass_fields__) <= 15
    old = tmp_path / "old.toml"
    old.write_text('[train]\nsteps = 9\nmixed_precision = "bf16"\nlabel_precision = "fp32"\ncompile = true\n')
    config = load_toml(old)
    assert (config.train.steps, config.runtime.mixed_precision, config.runtime.compile) == (9, "bf16", True)
    assert config.runtime.label_precision == "fp32"  # the old spelling wins over the preset's [runtime] "auto"
    saved = config.to_dict()  # an old run folder's config.json: the runtime keys inside [train]
    saved["train"].update(saved.pop("runtime"))
    assert from_dict(json.loads(json.dumps(saved))) == config
    both = tmp_path / "both.toml"
    both.write_text('[train]\nchannels_last = false\n[runtime]\nchannels_last = true\n')
    with pytest.raises(ConfigError, match=r"\['channels_last'\].*live in \[runtime\] now"):
        load_toml(both)
    parser = argparse.ArgumentParser()
    add_override_arguments(parser)
    args = parse_args(parser, ["--train.compile", "true", "--runtime.keep_host_memory", "false"])
    config = apply_overrides(from_dict({}), args)
    assert config.runtime.compile is True and config.runtime.keep_host_memory is False
    with pytest.raises(ConfigError, match="live in \\[runtime\\] now"):  # the Python call, both ways, refused first
        distill_datafree(torch.nn.Linear(1, 1), torch.nn.Linear(1, 1), image_size=28, channels=1, num_classes=10,
                         dataset="fashion-mnist", train={"compile": True}, runtime={"compile": False})


def test_every_run_has_the_coverage_callback_and_a_recipe_may_only_set_its_params(tmp_path):
    """``coverage`` is registered like the recipe's callbacks but every run has it: a recipe that leaves it out gets it
    with its defaults, one that lists it sets its window and threshold, ``off`` cannot drop it, bad params are refused."""
    from datafree.callbacks import CallbackContext, ClassCoverage, build_callbacks

    context = CallbackContext(num_classes=10, steps=200, conditional=True)
    default = [c for c in build_callbacks([("ema", {"decay": 0.9})], context) if isinstance(c, ClassCoverage)]
    assert len(default) == 1 and (default[0].window, default[0].min_share) == (20, 1 / 30)
    built = build_callbacks([("coverage", {"window_fraction": 0.5, "min_share": 0.05})], context)
    tuned = [c for c in built if isinstance(c, ClassCoverage)]
    assert len(tuned) == 1 and (tuned[0].window, tuned[0].min_share) == (100, 0.05)
    assert sorted(type(c).__name__ for c in built) == ["Budget", "ClassCoverage"]  # the budget, every run's too
    with pytest.raises(ConfigError, match="window_fraction .* in \\(0, 1\\]"):
        build_callbacks([("coverage", {"window_fraction": 0})], context)
    with pytest.raises(ConfigError, match="min_share"):
        build_callbacks([("coverage", {"min_share": 1.5})], context)
    config = apply_overrides(Config(), parse_args_with("--callbacks.coverage", "off"))
    assert [c for c in build_callbacks([(p.name, p.params) for p in config.callbacks], context)
            if isinstance(c, ClassCoverage)]  # dropped from the list, still there


def parse_args_with(*argv):
    parser = argparse.ArgumentParser()
    add_override_arguments(parser)
    return parse_args(parser, list(argv))
