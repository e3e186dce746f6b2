import argparse
from pathlib import Path

import pytest

from datafree.config import Config, ConfigError, load_toml, validate
from datafree.overrides import add_override_arguments, apply_overrides, parse_args

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
    config = apply_overrides(Config(), parse("--train.steps", "7", "--train.channels_last", "false",
                                             "--generator.lr", "0.5", "--student.milestones", "0.3,0.6",
                                             "--distill", '[{"name": "kd", "params": {"temperature": 4}}]'))  # fmt: skip
    assert config.train.steps == 7 and config.train.channels_last is False and config.generator.lr == 0.5
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
    config = Config()
    config.train.fresh_batches = True
    with pytest.raises(ConfigError, match="student_steps = 1 has none"):
        validate(config)
    config = Config()
    config.train.sample_every = 0
    with pytest.raises(ConfigError, match="sample_every must be > 0"):
        validate(config)
