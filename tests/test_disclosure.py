"""The settings-disclosed table: one per experiment, its values read from the `full` profile."""
import copy

import pytest

from hw1lib import Hw1Error, disclosure, profiles

# Where the seed report gives no value (read in /work/shared/seed/…: 1.1b states no optimizer,
# epochs or batch size; 1.2a, 1.3b and 1.3c no batch size; 1.3b and 1.3d no epochs).
GAPS = [("1.1-mnist", "epochs"), ("1.1-mnist", "batch size"), ("1.1-mnist", "optimizer"),
        ("1.2-pca", "batch size"), ("1.3-params", "epochs"), ("1.3-params", "batch size"),
        ("1.3-interpolation", "batch size"), ("1.3-sensitivity", "epochs")]


def at(settings, path):
    """The value at a dotted path, "*" standing for every key of a dict (as the table's rows)."""
    head, _, rest = path.partition(".")
    if head == "*":
        return {k: at(v, rest) if rest else v for k, v in settings.items()}
    return at(settings[head], rest) if rest else settings[head]


def leaves(value):
    if isinstance(value, dict):
        return [x for v in value.values() for x in leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in leaves(v)]
    return [value]


def shown(leaf, text, none):
    """Whether one setting's value is in the row's text (written independently of disclosure.show)."""
    if leaf is None:
        return none in text
    if isinstance(leaf, bool) or isinstance(leaf, str):
        return str(leaf) in text
    if isinstance(leaf, int):
        return str(leaf) in text.replace(",", "")  # 20,000 and [8, 2048] alike
    return f"{leaf:g}" in text


def perturbed(value):
    """Every number and word of the settings changed, so that a value typed into the table shows."""
    if isinstance(value, dict):
        return {k: perturbed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [perturbed(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value + 1_000_003
    if isinstance(value, float):
        return value * 3 + 0.0123
    if isinstance(value, str):
        return value + "~x"
    return value


def check_rows_read(full_settings):
    for experiment in profiles.EXPERIMENTS:
        full = full_settings(experiment)
        for row, spec in zip(disclosure.rows(experiment), disclosure.TABLES[experiment][1]):
            assert list(row["values"]) == list(spec.keys)
            for key, text in row["values"].items():
                for leaf in leaves(at(full, key)):
                    assert shown(leaf, text, spec.none), f"{experiment} {key}: {leaf!r} not in {text!r}"


def test_every_experiment_has_a_table_of_a_few_rows():
    assert set(disclosure.TABLES) == set(profiles.EXPERIMENTS)
    page = disclosure.settings_markdown()
    assert page.startswith(f"## {disclosure.HEADING}\n") and "No settings table" not in page
    tables = {part.split("`")[1]: part for part in page.split("\n### ")[1:]}  # by "(`experiment`)"
    assert set(tables) == set(profiles.EXPERIMENTS)
    for experiment, table in tables.items():
        assert "\n\n| setting | the seed report says | this project (`full`) | why |\n" in table
        rows = disclosure.rows(experiment)
        assert 4 <= len(rows) <= 8, experiment
        lines = [line for line in table.splitlines() if line.startswith("|")][2:]  # under header and rule
        assert len(lines) == len(rows), experiment
        for row, line in zip(rows, lines):
            assert row["seed"] and row["why"] and row["values"], (experiment, row["setting"])
            assert line.startswith(f"| {row['setting']} | {row['seed']} | ") and line.endswith(f" | {row['why']} |")
            assert all(f"`{key}` = {text}" in line for key, text in row["values"].items())


def test_the_project_values_are_those_of_the_full_profile():
    check_rows_read(lambda experiment: profiles.settings(experiment, "full"))


def test_the_project_values_are_read_not_typed(monkeypatch):
    before = {e: disclosure.rows(e) for e in profiles.EXPERIMENTS}
    real = profiles.settings
    monkeypatch.setattr(profiles, "settings", lambda experiment, profile: perturbed(real(experiment, profile)))
    check_rows_read(lambda experiment: profiles.settings(experiment, "full"))
    for experiment, rows in before.items():  # and every value of every row changed with them
        for old, new in zip(rows, disclosure.rows(experiment)):
            for key in old["values"]:
                if at(real(experiment, "full"), key) is not None:
                    assert new["values"][key] != old["values"][key], (experiment, key)
    assert "1,000,131" in disclosure.settings_markdown()  # 1.1b's batch 128, perturbed


def test_the_seed_reports_gaps_are_rows_that_say_not_stated():
    for experiment, setting in GAPS:
        row = next((r for r in disclosure.rows(experiment) if r["setting"] == setting), None)
        assert row is not None, f"{experiment} has no row {setting!r}"
        assert row["seed"].startswith(disclosure.NOT_STATED), (experiment, setting, row["seed"])
    # 1.2b: the seed report trained ReLU; the row says so beside what this project trains
    row = next(r for r in disclosure.rows("1.2-gradnorm") if r["setting"] == "activation")
    assert row["seed"] == "ReLU"
    assert row["values"] == {"model.activation": profiles.settings("1.2-gradnorm", "full")["model"]["activation"]}


def test_a_setting_missing_from_the_profile_is_one_clear_error(monkeypatch):
    real = profiles.settings

    def without_batch_size(experiment, profile):
        s = copy.deepcopy(real(experiment, profile))
        s.pop("batch_size", None)
        return s
    monkeypatch.setattr(profiles, "settings", without_batch_size)
    with pytest.raises(Hw1Error, match=r"^disclosure: 1.2-pca has no setting 'batch_size' in the full "
                                       r"profile \(a row in hw1lib/disclosure.py names it"):
        disclosure.rows("1.2-pca")
