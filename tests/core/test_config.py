import dataclasses
from pathlib import Path

import pytest
import yaml

from kernelft.core.config import ConfigError, load_config, load_schema, validate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_default_config_is_valid(config):
    validate(config)


def test_smoke_overrides_are_valid():
    validate(load_config(ROOT / "config.yaml", ROOT / "configs" / "smoke.yaml"))


def test_misspelt_key_is_named(config):
    config["finetune"]["stpes"] = 10
    with pytest.raises(ConfigError, match=r"finetune.*'stpes'"):
        validate(config)


def test_negative_sample_size_is_named(config):
    config["finetune"]["sample_sizes"] = [16, -4]
    with pytest.raises(ConfigError, match=r"finetune\.sample_sizes\.1"):
        validate(config)


def test_unknown_task_is_named(config):
    config["entk"]["tasks"] = ["sst2"]
    with pytest.raises(ConfigError, match=r"entk\.tasks.*'sst2'"):
        validate(config)


def test_sample_size_not_a_multiple_of_classes(config):
    config["finetune"]["tasks"] = ["tweets-sentiment3"]
    config["finetune"]["sample_sizes"] = [16]
    with pytest.raises(ConfigError, match="multiple of the 3 classes"):
        validate(config)


def test_prompt_head_needs_label_words(config):
    config["tasks"]["tweets-sentiment2"]["label_words"] = ["great"]
    with pytest.raises(ConfigError, match="tasks.tweets-sentiment2.label_words"):
        validate(config)


def test_earlystop_task_must_exist_and_be_binary(config):
    config["earlystop"]["tasks"] = ["nope"]
    with pytest.raises(ConfigError, match=r"earlystop\.tasks names unknown task 'nope'"):
        validate(config)
    config["earlystop"]["tasks"] = ["tweets-sentiment3"]
    with pytest.raises(ConfigError, match="needs binary tasks"):
        validate(config)


def test_earlystop_pool_must_hold_the_largest_size_and_the_test_set(config):
    config["earlystop"]["pool_size"] = 256
    with pytest.raises(ConfigError, match=r"earlystop\.pool_size=256"):
        validate(config)


def test_earlystop_misspelt_key_is_named(config):
    config["earlystop"]["r2_method"] = "pinv"
    with pytest.raises(ConfigError, match=r"earlystop.*'r2_method'"):
        validate(config)


def test_linear_probe_methods_need_a_linear_head(config):
    config["finetune"]["method"] = "lpft"
    with pytest.raises(ConfigError, match="finetune.method='lpft'.*model.head: linear"):
        validate(config)
    config["model"]["head"] = "linear"
    validate(config)


def test_earlystop_finetune_sizes_must_be_sweep_sizes(config):
    config["earlystop"]["finetune_sizes"] = [24, 50]
    with pytest.raises(ConfigError, match=r"earlystop.finetune_sizes: \[50\] not in earlystop.sizes"):
        validate(config)


def test_earlystop_finetune_reps_at_most_the_sweep_reps(config):
    config["earlystop"]["finetune_reps"] = config["earlystop"]["n_rep"] + 1
    with pytest.raises(ConfigError, match="earlystop.finetune_reps=4 exceeds earlystop.n_rep=3"):
        validate(config)


def test_method_names_of_the_schema_are_the_packages():
    """The schema's enums are the user's view of the method lists that the library defines once."""
    from kernelft.lpft import METHODS as LPFT_METHODS
    from kernelft.training import METHODS
    from kernelft.vi import FIT_KEYS
    from kernelft.vi.simulation import VIConfig

    schema = load_schema()["properties"]
    assert tuple(schema["finetune"]["properties"]["method"]["enum"]) == METHODS
    assert tuple(schema["lpft"]["properties"]["methods"]["items"]["enum"]) == LPFT_METHODS
    assert set(schema["lpft"]["properties"]["learning_rates"]["properties"]) <= set(LPFT_METHODS)
    assert {field.name for field in dataclasses.fields(VIConfig)} == set(FIT_KEYS) <= set(schema["vi"]["properties"])
