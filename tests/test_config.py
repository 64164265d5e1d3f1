import pytest

from wiringlab.experiment import ConfigError, effective_baseline, expand, load_recipe
from wiringlab.experiment.recipe import Recipe, parse_override


def _write(tmp_path, text, name="r.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_grid_zip_and_seeds_expand(tmp_path):
    path = _write(tmp_path, """
name: t
base: {data: {name: synthetic}, model: {kind: mlp, hidden: [8]}}
grid: {model.hidden: [[8], [16]], train.optimizer.name: [sgd, adam]}
zip: {train.optimizer.lr: [0.1, 0.01], train.batch_size: [32, 64]}
seeds: [0, 1]
""")
    specs = expand(load_recipe(path), str(path))
    assert len(specs) == 2 * 2 * 2 * 2
    assert len({s.run_id for s in specs}) == len(specs)
    labels = {s.label for s in specs}
    assert len(labels) == 8
    first = specs[0]
    assert first.config.model.hidden == [8] and first.config.train.optimizer.lr == 0.1
    assert first.config.train.batch_size == 32
    # ids are stable across expansions
    assert [s.run_id for s in expand(load_recipe(path), str(path))] == [s.run_id for s in specs]


def test_override_replaces_grid_axis_and_changes_ids(tmp_path):
    path = _write(tmp_path, "name: t\nbase: {data: {name: synthetic}}\ngrid: {train.epochs: [1, 2]}\nseeds: [0]\n")
    recipe = load_recipe(path)
    specs = expand(recipe, overrides=[parse_override("train.epochs=3")])
    assert len(specs) == 1 and specs[0].config.train.epochs == 3
    assert parse_override("model.hidden=[4, 4]") == ("model.hidden", [4, 4])


@pytest.mark.parametrize("text,expected", [
    ("name: t\nbase: {train: {optimiser: {lr: 0.1}}}\n", ["r.yaml", "train.optimiser", "allowed keys here", "optimizer"]),
    ("name: t\nbase: {train: {epochs: many}}\n", ["r.yaml", "train.epochs", "'many'"]),
    ("name: t\nbase: {train: {optimizer: {name: lbfgs}}}\n", ["train.optimizer.name", "'sgd'", "'adam'"]),
    ("name: t\ngrid: {model.hiden: [[8]]}\n", ["hiden", "allowed keys here", "hidden"]),
    ("name: t\nbase: {data: {name: imagenet}}\n", ["data.name", "mnist1d", "fashion-mnist"]),
    ("name: t\nsedes: [1]\n", ["sedes", "allowed keys here", "seeds"]),
    ("name: bad name!\n", ["name", "letters"]),
    ("name: t\nbase: {train: {device: mps}}\n", ["train.device", "'mps'", "auto, cpu, cuda, cuda:N"]),
    ("name: t\nbase: {train: {device: 'cuda:x'}}\n", ["train.device", "'cuda:x'", "cuda:N"]),
    ("name: t\nbase: {train: {optimizer: {lr: .inf}}}\n", ["train.optimizer.lr", "finite number"]),
    ("name: t\nbase: {train: {l1: .nan}}\n", ["train.l1", "finite number"]),
    ("name: t\nbase: {train: {optimizer: {name: adam, betas: [1.5, 0.999]}}}\n",
     ["train.optimizer.betas.0", "less than 1"]),
    ("name: t\nbase: {train: {optimizer: {name: sgd, momentum: 0, nesterov: true}}}\n",
     ["train.optimizer", "nesterov: true needs momentum > 0"]),
])
def test_bad_recipes_name_file_key_and_allowed(tmp_path, text, expected):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        expand(load_recipe(path), str(path))
    message = str(info.value)
    for fragment in expected:
        assert fragment in message, message


def test_error_keys_are_the_ones_the_user_wrote(tmp_path):
    """pydantic puts union tags ("mlp", "spatial") into error locations; the message shows
    the key as written in the recipe, with the allowed keys of the model it belongs to."""
    path = _write(tmp_path, "name: t\nbase: {model: {kind: mlp, layer: {type: spatial, kernal: linear}}}\n")
    with pytest.raises(ConfigError) as info:
        expand(load_recipe(path), str(path))
    message = str(info.value)
    assert ": model.layer.kernal: " in message, message
    assert "model.mlp" not in message and "spatial.kernal" not in message
    assert "kernel, floor" in message


def test_a_problem_is_listed_once_and_names_only_the_configs_it_occurs_in(tmp_path):
    path = _write(tmp_path, """
name: t
base: {data: {name: synthetic}, train: {epochs: 0}}
grid: {train.batch_size: [32, -1, -2]}
seeds: [0, 1]
""")
    with pytest.raises(ConfigError) as info:
        expand(load_recipe(path), str(path))
    lines = str(info.value).splitlines()
    epochs = [line for line in lines if "train.epochs" in line]
    assert len(epochs) == 1 and "[" not in epochs[0].split(": train.epochs")[0], lines  # every config: no label
    batch = [line for line in lines if "train.batch_size" in line]
    assert len(batch) == 2 and "[batch_size=-1]" in batch[0] and "[batch_size=-2]" in batch[1], lines


@pytest.mark.parametrize("layer_at,ok", [([1], True), ([0, 1], True), ([], True), ([2], False), ([-1], False)])
def test_layer_at_must_name_existing_hidden_layers(tmp_path, layer_at, ok):
    """An index past the hidden layers would silently build a plain (control) network."""
    path = _write(tmp_path, f"name: t\nbase: {{model: {{hidden: [64, 32], layer: {{type: spatial}}, "
                            f"layer_at: {layer_at}}}}}\n")
    if ok:
        assert expand(load_recipe(path), str(path))
        return
    with pytest.raises(ConfigError) as info:
        expand(load_recipe(path), str(path))
    assert ": model: " in str(info.value) and "from 0 to 1" in str(info.value) and "'none'" in str(info.value)


def test_evolution_accepts_a_sparse_prior_block():
    from wiringlab.experiment.config import RunConfig

    block = {"width": 16, "layer": {"type": "sparse", "density": 0.5}}
    config = RunConfig(model={"hidden": [32], "prior_block": block}, evolution={"zeta": 0.3})
    assert config.model.prior_block.layer.type == "sparse"
    with pytest.raises(ValueError, match="prior_block"):
        RunConfig(model={"hidden": [32]}, evolution={"zeta": 0.3})


def test_zip_lengths_must_match():
    recipe = Recipe(name="t", zip={"train.epochs": [1, 2], "seed": [1]})
    with pytest.raises(ConfigError, match=r"same length \(one config per row\); got train.epochs: 2, seed: 1"):
        expand(recipe)


def test_missing_and_non_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="no such recipe"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(_write(tmp_path, "name: [unclosed"))


# --- repeats, overrides inside axes, the baseline ------------------------------------------

_ARMS = {"name": "arms", "base": {"data": {"name": "synthetic"}, "model": {"hidden": [8]}},
         "zip": {"model.layer.type": ["linear", "sparse", "sparse"],
                 "evolution": [None, None, {"zeta": 0.3}]},
         "baseline": 'type="sparse" evolution=null', "seeds": [0, 1]}


@pytest.mark.parametrize(("change", "message"), [
    ({"seeds": [0, 1, 0]}, "seeds: seed 0 is listed twice"),
    ({"grid": {"train.optimizer.lr": [0.05, 0.1, 0.05]}}, "grid: train.optimizer.lr 0.05 is listed twice"),
    ({"zip": {"train.optimizer.lr": [0.1, 0.1], "train.batch_size": [32, 32]}}, "is listed twice"),
    ({"seeds": []}, "seeds: needs at least one seed"),
    ({"grid": {"seed": [1, 2]}}, "seed cannot be a grid or zip axis"),
    ({"base": {"data": {"name": "synthetic"}, "seed": 5}}, "base: seed 5 would be replaced by each of `seeds`"),
    ({"grid": {"train.optimizer.lr": ["1e-2", 0.01]}},
     r'configs {"train.optimizer.lr":"1e-2"} and {"train.optimizer.lr":0.01} are the same run'),
    ({"grid": {"train.batch_size": [32, 32.0]}},
     r'configs {"train.batch_size":32} and {"train.batch_size":32.0} are the same run'),
])
def test_a_repeat_would_count_the_same_runs_twice_and_is_an_error(change, message):
    recipe = Recipe(**{"name": "t", "base": {"data": {"name": "synthetic"}}, **change})
    with pytest.raises(ConfigError, match=message):
        expand(recipe, "t.yaml")


def test_an_override_inside_an_axis_value_is_set_where_that_value_is_a_mapping():
    specs = expand(Recipe(**_ARMS), "arms.yaml", [parse_override("evolution.zeta=0.1")])
    zetas = {s.label: s.config.evolution and s.config.evolution.zeta for s in specs}
    assert zetas == {'type="linear" evolution=null': None, 'type="sparse" evolution=null': None,
                     'type="sparse" evolution={"zeta":0.1}': 0.1}  # the label shows what ran
    with pytest.raises(ConfigError, match="none of its values is a mapping"):
        expand(Recipe(**{**_ARMS, "zip": {"evolution": [None, None]}, "baseline": None}), "arms.yaml",
               [parse_override("evolution.zeta=0.1")])


def test_overriding_one_zip_key_runs_each_resulting_config_once_and_keeps_the_baseline():
    overrides = [parse_override("model.layer.type=sparse")]  # rows 2 and 3 differ only in evolution now
    specs = expand(Recipe(**_ARMS), "arms.yaml", overrides)
    assert sorted(s.label for s in specs) == ["evolution=null"] * 2 + ['evolution={"zeta":0.3}'] * 2
    assert len({s.run_id for s in specs}) == len(specs) == 4
    assert effective_baseline(Recipe(**_ARMS), "arms.yaml", overrides) == "evolution=null"
    assert effective_baseline(Recipe(**_ARMS), "arms.yaml") == _ARMS["baseline"]


@pytest.mark.parametrize(("baseline", "expected"), [("lr=0.1 batch_size=64", "lr=0.1"),
                                                     ("lr=0.2 batch_size=64", "lr=0.2")])
def test_overriding_one_axis_of_a_grid_keeps_the_named_baseline(baseline, expected):
    """An overridden grid axis leaves fewer configs than written; the baseline is still the
    written one's remaining values (it had read the wrong config, or raised IndexError)."""
    recipe = Recipe(name="t", base={"data": {"name": "synthetic"}}, baseline=baseline,
                    grid={"train.optimizer.lr": [0.1, 0.2], "train.batch_size": [32, 64]})
    assert effective_baseline(recipe, "t.yaml", [parse_override("train.batch_size=16")]) == expected
    assert effective_baseline(recipe, "t.yaml", [parse_override("train.optimizer.lr=0.3")]) == "batch_size=64"


def test_a_baseline_that_names_no_config_is_an_error_naming_the_configs(tmp_path):
    path = _write(tmp_path, "name: t\nbase: {data: {name: synthetic}}\ngrid: {train.optimizer.lr: [0.1, 0.5]}\n"
                            "baseline: lr=0.05\n")
    with pytest.raises(ConfigError, match=r"baseline: 'lr=0.05' is not a config of this recipe; "
                                          r"the configs are: lr=0.1; lr=0.5"):
        load_recipe(path)


def test_a_mistyped_grid_key_is_named_before_the_baseline_it_breaks(tmp_path):
    path = _write(tmp_path, "name: t\nbase: {data: {name: synthetic}, model: {layer: {type: spatial}}}\n"
                            "grid: {model.layer.kernal: [none, exponential]}\nbaseline: kernel=\"none\"\n")
    with pytest.raises(ConfigError, match=r"model\.layer\.kernal: Extra inputs are not permitted"):
        load_recipe(path)


def test_seed_overrides_and_bad_override_values_are_errors_that_say_the_fix():
    with pytest.raises(ConfigError, match="--seeds"):
        expand(Recipe(**_ARMS), "arms.yaml", [("seed", 7)])
    with pytest.raises(ConfigError, match=r"not valid YAML .*quote lists"):
        parse_override("model.hidden=[64, 64")


def test_labels_keep_every_digit_that_tells_two_values_apart():
    recipe = Recipe(name="t", base={"data": {"name": "synthetic"}},
                    grid={"train.optimizer.lr": [0.1234567, 0.1234568, 0.001, 1e-05]})
    labels = list(dict.fromkeys(s.label for s in expand(recipe)))
    assert labels == ["lr=0.1234567", "lr=0.1234568", "lr=0.001", "lr=1e-05"]
    # values that 6 digits tell apart keep their 6-digit labels (and existing folders their run ids)
    kept = Recipe(name="t", base={"data": {"name": "synthetic"}}, grid={"train.optimizer.lr": [0.031622777, 0.1]})
    assert list(dict.fromkeys(s.label for s in expand(kept))) == ["lr=0.0316228", "lr=0.1"]
    # an integer and a float that print alike (they had shared the label lr=1: one row of n = 4)
    mixed = Recipe(name="t", base={"data": {"name": "synthetic"}}, grid={"train.optimizer.lr": [1, 1.0000001, 0.5]})
    assert list(dict.fromkeys(s.label for s in expand(mixed))) == ["lr=1", "lr=1.0000001", "lr=0.5"]


def test_an_axis_of_mappings_that_drops_base_keys_says_so(caplog):
    recipe = Recipe(name="t", base={"data": {"name": "synthetic"},
                                    "train": {"optimizer": {"name": "sgd", "lr": 0.05, "weight_decay": 5e-4}}},
                    grid={"train.optimizer": [{"name": "adam", "lr": 1e-3}, {"name": "sgd", "lr": 0.05,
                                                                           "weight_decay": 5e-4}]}, seeds=[0])
    with caplog.at_level("WARNING", logger="wiringlab.experiment.recipe"):
        specs = expand(recipe, "t.yaml")
    assert specs[0].config.train.optimizer.weight_decay == 0.0  # replaced whole, as documented
    assert "do not keep base train.optimizer.weight_decay" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="wiringlab.experiment.recipe"):
        expand(recipe.model_copy(update={"grid": {"train.optimizer.lr": [0.1, 0.05]}}), "t.yaml")
    assert "do not keep" not in caplog.text


def test_grid_points_are_outer_and_zip_rows_inner():
    recipe = Recipe(name="t", base={"data": {"name": "synthetic"}}, grid={"model.hidden": [[8], [16]]},
                    zip={"train.optimizer.lr": [0.1, 0.05]}, seeds=[0])
    assert [s.label for s in expand(recipe, "t.yaml")] == [
        "hidden=[8] lr=0.1", "hidden=[8] lr=0.05", "hidden=[16] lr=0.1", "hidden=[16] lr=0.05"]


def test_an_override_whose_key_only_starts_like_an_axis_sets_the_base():
    """model.layer_at is not inside a model.layer axis (nor evolution.zeta_schedule inside evolution.zeta)."""
    recipe = Recipe(name="t", base={"data": {"name": "synthetic"}, "model": {"hidden": [8, 8]}}, seeds=[0],
                    grid={"model.layer": [{"type": "linear"}, {"type": "spatial"}]})
    specs = expand(recipe, "t.yaml", overrides=[("model.layer_at", [1])])
    assert len(specs) == 2 and all(s.config.model.layer_at == [1] for s in specs)
    assert {s.config.model.layer.type for s in specs} == {"linear", "spatial"}


def test_an_override_inside_nested_axes_goes_into_the_innermost():
    base = {"data": {"name": "synthetic"}, "model": {"hidden": [8], "layer": {"type": "sparse"}}}
    recipe = Recipe(name="t", base=base,
                    grid={"evolution": [{"regrow": "distance", "zeta": 0.3}]}, seeds=[0],
                    zip={"evolution.distance": [{"kernel": "gaussian"}, {"kernel": "exponential"}]})
    specs = expand(recipe, "t.yaml", overrides=[("evolution.distance.sigma", 0.2)])
    assert [s.config.evolution.distance.sigma for s in specs] == [0.2, 0.2]


_LR_AXIS = dict(name="t", base={"data": {"name": "synthetic"}, "train": {"optimizer": {"name": "adam", "lr": 0.002}}},
                zip={"train.optimizer.lr": [0.001, 0.002]}, seeds=[0])


@pytest.mark.parametrize("overrides, message", [
    # a scalar where an axis sets a field: replacing it by {} used to drop the optimizer silently (sgd ran)
    ([("train.optimizer", "adam")], r"--set train.optimizer=\"adam\": the grid/zip axis train.optimizer.lr sets a "
                                    r"field inside train.optimizer, so no config could keep"),
    ([("model.hidden", [8, 8]), ("model.hidden.0", 4)],  # blames the --set that cannot be applied
     r"--set model.hidden.0: model.hidden.0 lies inside model.hidden, which is \[8, 8\], not a mapping"),
])
def test_an_override_that_would_replace_a_mapping_by_a_value_is_an_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        expand(Recipe(**_LR_AXIS), "t.yaml", overrides)


def test_a_base_value_an_axis_sets_a_field_of_is_an_error_naming_both():
    recipe = Recipe(**{**_LR_AXIS, "base": {"data": {"name": "synthetic"}, "train": {"optimizer": "adam"}}})
    with pytest.raises(ConfigError, match=r"t.yaml: grid/zip axis train.optimizer.lr: train.optimizer.lr lies inside "
                                          r"train.optimizer, which is 'adam', not a mapping"):
        expand(recipe, "t.yaml")


def test_an_override_with_an_empty_key_is_an_error():
    for text in ("=3", "train.=3", ".epochs=3"):
        with pytest.raises(ConfigError, match="the key before = is empty or has an empty part"):
            parse_override(text)


@pytest.mark.parametrize("grid", [
    {"train.optimizer.lr": [0.1, 0.2], "train.optimizer": [{"name": "adam"}, {"name": "sgd"}]},
    {"train.optimizer": [{"name": "adam"}, {"name": "sgd"}], "train.optimizer.lr": [0.1, 0.2]},
])
def test_an_axis_inside_another_sets_a_field_of_it_whatever_the_key_order(grid):
    """Applied in the order written, a mapping axis after the lr axis used to wipe its lr."""
    specs = expand(Recipe(name="t", base={"data": {"name": "synthetic"}}, grid=grid, seeds=[0]), "t.yaml")
    pairs = {(s.config.train.optimizer.name, s.config.train.optimizer.lr) for s in specs}
    assert pairs == {("adam", 0.1), ("adam", 0.2), ("sgd", 0.1), ("sgd", 0.2)}


def test_an_axis_inside_a_null_arm_of_another_is_an_error():
    base = {"data": {"name": "synthetic"}, "model": {"hidden": [8], "layer": {"type": "sparse"}}}
    recipe = Recipe(name="t", base=base,
                    grid={"evolution": [None, {"zeta": 0.3}]}, zip={"evolution.zeta": [0.1, 0.2]}, seeds=[0])
    with pytest.raises(ConfigError, match="axis evolution.zeta sets a field of axis evolution, whose value None is "
                                          "not a mapping"):
        expand(recipe, "t.yaml")


def test_run_ids_keep_the_sign_of_an_exponent():
    recipe = Recipe(name="t", base={"data": {"name": "synthetic"}}, grid={"train.optimizer.lr": [1e-6, 1e6]},
                    seeds=[0])
    assert [s.run_id.rsplit("-s0-", 1)[0] for s in expand(recipe, "t.yaml")] == ["lr-1e-06", "lr-1e+06"]


def test_an_override_that_an_axis_would_turn_back_into_a_mapping_is_an_error():
    """`--set evolution=null` to switch SET off, under an `evolution.zeta` axis, used to run SET."""
    base = {"data": {"name": "synthetic"}, "model": {"hidden": [8], "layer": {"type": "sparse"}},
            "evolution": {"zeta": 0.3}}
    recipe = Recipe(name="t", base=base, grid={"evolution.zeta": [0.1, 0.3]}, seeds=[0])
    with pytest.raises(ConfigError, match=r"--set evolution=null: the grid/zip axis evolution.zeta sets a field "
                                          r"inside evolution, so no config could keep evolution=null"):
        expand(recipe, "t.yaml", [("evolution", None)])
    specs = expand(recipe, "t.yaml", [("evolution", {"zeta": 0.5, "regrow": "gradient"})])  # a mapping: fine
    assert [(s.config.evolution.zeta, s.config.evolution.regrow) for s in specs] == [(0.1, "gradient"),
                                                                                       (0.3, "gradient")]
