import pytest

from wiringlab.experiment import ConfigError, expand, load_recipe
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
    with pytest.raises(ConfigError, match="same length"):
        expand(recipe)


def test_missing_and_non_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="no such recipe"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(_write(tmp_path, "name: [unclosed"))
