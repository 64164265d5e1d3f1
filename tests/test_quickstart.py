"""The quickstart recipe, as a user runs it (shortened), writes every file of the results folder."""


def test_quickstart_recipe_runs_and_writes_results(quickstart_folder):
    out, printed = quickstart_folder
    assert "runs trained" in printed and "| config |" in printed
    for name in ["summary.csv", "table.md", "recipe.json", "report.html", "figures/learning_curves.png",
                 "figures/spatial_kernels.png", "figures/effective_sparsity.png"]:
        assert (out / name).is_file(), name
    table = (out / "table.md").read_text()
    for heading in ["## Epochs to threshold", "## Spatial kernels", "## Effective sparsity"]:
        assert heading in table
    runs = list((out / "runs").iterdir())
    assert len(runs) == 6  # 3 configs x 2 seeds
    for run in runs:
        assert {p.name for p in run.iterdir()} >= {"config.yaml", "metrics.jsonl", "summary.json",
                                                    "weights.safetensors", "kernels.safetensors"}
