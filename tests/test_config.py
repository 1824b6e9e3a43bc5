"""Typed config: defaults are the paper's Table 3; bad keys, types and values fail fast."""

from __future__ import annotations

import pytest
import yaml

from alm_offline.config import (
    BUNDLED_CONFIGS,
    CHOICES,
    BcIndex,
    ConfigError,
    RunConfig,
    Termination,
    bundled_config_path,
    load_config,
    to_dict,
)


def test_defaults_are_table_3_and_online_yaml_matches():
    cfg = load_config()
    a = cfg.agent
    assert (a.gamma, a.warmup_steps, a.tau, a.lambda_, a.buffer_size, a.batch_size) == (
        0.99,
        5000,
        0.005,
        0.95,
        100_000,
        512,
    )
    assert (a.lr, a.max_grad_norm, a.latent_dim, a.classifier_coef, a.stddev_clip) == (
        1e-4,
        100.0,
        50,
        0.1,
        0.3,
    )
    assert (a.expl_std_start, a.expl_std_end, a.expl_std_steps, a.seq_len) == (1.0, 0.1, 100_000, 3)
    assert (a.hidden_dim, a.model_hidden_dim) == (512, 1024)
    assert cfg.env == "HalfCheetah-v5"
    assert to_dict(load_config("online")) == to_dict(RunConfig())
    assert bundled_config_path("quick").is_file()


@pytest.mark.parametrize("name", BUNDLED_CONFIGS)
def test_every_bundled_config_loads_by_name(name):
    """Each shipped YAML exists, validates and is read (only online.yaml is the defaults)."""
    assert bundled_config_path(name).is_file()
    is_default = to_dict(load_config(name)) == to_dict(RunConfig())
    assert is_default == (name == "online")


def test_offline_locomotion_is_the_config_of_the_readme_table():
    """The values docs/offline-locomotion.md's figures were measured with."""
    a = load_config("offline-locomotion").agent
    assert a.bc_term == "behaviour-kl"
    assert (a.bc_weight, a.lr, a.batch_size, a.seq_len, a.obs_norm) == (1.0, 1e-3, 128, 3, True)
    assert (a.hidden_dim, a.model_hidden_dim, a.latent_dim) == (128, 256, 50)
    cfg = load_config("offline-locomotion")
    assert (cfg.steps, cfg.eval.every, cfg.eval.episodes, cfg.threads) == (10000, 2000, 5, 1)


def test_yaml_then_dotlist_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("env: Hopper-v5\nagent:\n  batch_size: 64\n")
    cfg = load_config(str(path), ["agent.batch_size=32", "eval.every=100", "run_dir=/x"])
    assert (cfg.env, cfg.agent.batch_size, cfg.eval.every, cfg.run_dir) == (
        "Hopper-v5",
        32,
        100,
        "/x",
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["agent.nope=1"], "nope"),
        (["nope=1"], "nope"),
        (["agent.batch_size=many"], "batch_size"),
        (["steps=0"], "steps must be positive"),
        (["steps=-5"], "steps must be positive"),
        (["agent.gamma=1.5"], "agent.gamma"),
        (["agent.bc_weight=-1"], "agent.bc_weight must be >= 0"),
        (["agent.bc_coef=1000"], "agent.bc_coef was replaced by agent.bc_weight"),
        (["agent.bc_term=kl"], "agent.bc_term must be one of likelihood, behaviour-kl"),
        (["agent.action_penalty=-0.5"], "agent.action_penalty must be >= 0"),
        (["agent.action_penalty=1", "agent.actor_loss=td3"], "applies to the svg actor loss"),
        (["device=tpu"], "device"),
        (["eval.latent=median"], "eval.latent must be one of mean, sample"),
        (["agent.precision=fp16"], "agent.precision must be one of fp32, tf32, bf16"),
        (["steps"], "KEY=VALUE"),
    ],
)
def test_bad_overrides_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(str(bad))


def test_alm_config_prints_every_key_with_its_comment_from_config_py():
    from click.testing import CliRunner

    from alm_offline.config import field_comments, load_config, to_dict
    from cli import alm

    result = CliRunner().invoke(alm, ["config", "--config", "quick", "agent.seq_len=5"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout) == to_dict(load_config("quick", ("agent.seq_len=5",)))
    leaves = [line for line in result.stdout.splitlines() if not line.endswith(":")]
    assert len(leaves) == len(field_comments()) and all("  # " in line for line in leaves)
    assert "  seq_len: 5  # K: length of model rollouts in the bound" in leaves
    kl = next(line for line in leaves if "kl_coef" in line)
    assert "ablations" not in kl  # a section header is not a key's comment


def test_seed_beside_seeds_is_one_warning_and_the_seeds_train():
    import warnings

    from alm_offline.errors import AlmWarning

    with pytest.warns(AlmWarning, match=r"^seeds=1,2 trains those seeds: seed=3 is ignored$"):
        cfg = load_config("quick", ["seeds=1,2", "seed=3"])
    assert (cfg.seeds, cfg.seed) == ([1, 2], 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # seed=2 is one of the seeds: nothing to say
        load_config("quick", ["seeds=1,2", "seed=2"])


def test_the_config_is_settled_before_validation_and_never_edited_after():
    """Issue 42: compile's booleans and a batch's seed are settled before ``validate``,
    which only checks."""
    from alm_offline.config import load_config, settled, to_dict, validate

    cfg = load_config("quick", ["agent.compile=true", "seeds=3,4"])
    assert cfg.agent.compile == "on" and cfg.seed == 3 and cfg.seeds == [3, 4]
    before = to_dict(cfg)
    validate(cfg)
    assert to_dict(cfg) == before
    assert to_dict(settled(cfg)) == before  # settling is idempotent


def test_run_modes_name_their_facts_once():
    from alm_offline.config import MODES, OFFLINE, ONLINE, run_mode
    from alm_offline.training.rundir import summary_mode

    assert run_mode("online") is ONLINE and ONLINE.online and not OFFLINE.online
    assert set(MODES) == {"online", "offline"}
    assert (
        summary_mode({"mode": "offline", "dataset": "d.hdf5"}).where_of({"dataset": "d.hdf5"})
        == "on d.hdf5"
    )
    assert summary_mode({"env_steps": 12}).where_of({"env_steps": 12}) == "(12 env steps)"
    assert (ONLINE.default_config, OFFLINE.default_config) == (None, "offline")


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("seeds=1,,2", "seeds: '1,,2' is not a list of seeds"),
        ("agent.lr=[1,", "agent.lr: cannot read the value '[1,'"),
        ("env={", "env: cannot read the value '{'"),
        ("seeds={a: 1}", "seeds: '{a: 1}' is not a list of seeds"),
        ("seeds=[{a: 1}]", "seeds must be integers"),
        ("seeds=5-2", "seeds: the range '5-2' runs backwards"),
    ],
)
def test_a_malformed_override_value_is_one_line_naming_its_key(override, fragment):
    from click.testing import CliRunner
    from conftest import assert_one_line_error

    from cli import alm

    assert_one_line_error(CliRunner().invoke(alm, ["config", override]), fragment)


def test_seed_ranges_and_long_lists():
    assert load_config(None, ["seeds=1-3,7"]).seeds == [1, 2, 3, 7]
    many = load_config(None, [f"seeds={','.join(map(str, range(1, 10002)))}"]).seeds
    assert many == list(range(1, 10002))  # past OmegaConf's YAML size limit
    assert load_config(None, ["seeds=[4, 5]"]).seeds == [4, 5]


def test_each_choice_is_an_enum_checked_once_and_stored_as_a_string():
    """AgentConfig's choices come from their StrEnums; a loaded config holds plain strings
    (a YAML file, a checkpoint and a summary never see an enum object); the core's members
    compare equal to them; a value outside the enum is one ConfigError at load."""
    assert CHOICES["termination"] == ("none", "learned")
    assert CHOICES["bc_index"] == ("t", "t+1") and len(CHOICES) == 8
    cfg = load_config("quick", ["agent.termination=learned", "agent.bc_index=t+1"])
    assert type(cfg.agent.termination) is str and type(cfg.agent.bc_index) is str
    assert Termination(cfg.agent.termination) is Termination.LEARNED
    assert cfg.agent.bc_index == BcIndex.NEXT
    assert "termination: learned" in yaml.safe_dump(to_dict(cfg))
    with pytest.raises(ConfigError, match=r"agent\.termination must be one of none, learned"):
        load_config("quick", ["agent.termination=sometimes"])
