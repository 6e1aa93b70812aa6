"""Every YAML under recipes/ and configs/ parses: recipes alone, overlays on top of recipes/sft.yaml."""

from pathlib import Path

import pytest
import yaml

from lit_align.cli import run_cli
from tests.helpers import REPO

RECIPES = sorted((REPO / "recipes").rglob("*.yaml"))
OVERLAYS = sorted((REPO / "configs").rglob("*.yaml"))


def test_yaml_count():
    # Update these numbers when you add a recipe or an overlay; a file that goes missing fails here.
    assert len(RECIPES) == 10, RECIPES
    assert len(OVERLAYS) == 11, OVERLAYS


def _parse(*configs: Path, capsys) -> str:
    args = ["fit"]
    for config in configs:
        args += ["--config", str(config)]
    with pytest.raises(SystemExit) as info:
        run_cli([*args, "--print_config"])
    out = capsys.readouterr()
    assert info.value.code == 0, out.err[-2000:]
    return out.out


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_parses(recipe, capsys):
    assert yaml.safe_load(recipe.read_text())
    resolved = yaml.safe_load(_parse(recipe, capsys=capsys))
    assert resolved["model"]["class_path"].startswith("lit_align.objectives.")
    assert resolved["data"]["class_path"].startswith("lit_align.data.")


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_overlay_parses_on_a_recipe(overlay, capsys):
    assert isinstance(yaml.safe_load(overlay.read_text()), dict)
    # An overlay names the recipe it goes on in a "# base: recipes/x.yaml" first line; the default is sft.yaml.
    first = overlay.read_text().splitlines()[0]
    base = first.split("base:", 1)[1].strip() if first.startswith("# base:") else "recipes/sft.yaml"
    resolved = yaml.safe_load(_parse(REPO / base, overlay, capsys=capsys))
    given = yaml.safe_load(overlay.read_text())
    policy = given.get("model", {}).get("init_args", {}).get("policy", {})
    for key, value in policy.items():  # the overlay's values win over the recipe's
        assert resolved["model"]["init_args"]["policy"][key] == value

    data = given.get("data", {}).get("init_args", {})
    for key, value in data.items():
        if not isinstance(value, dict):
            assert resolved["data"]["init_args"][key] == value
