"""The one fine-tuning loop (edgecls/training/fine_tune.py): training's phases, QAT and pruning all
build their optimizer and fit through it, the optimizer chosen reaches the sidecars, and an unknown
name is one line."""

import json

import pytest

from edgecls.config import RunConfig
from edgecls.training import fine_tune


@pytest.fixture
def loop(monkeypatch):
    """What went through the loop: ``loop["built"]`` (choice, Keras optimizer class) per compile and
    ``loop["fits"]`` the number of fits. A stage with its own optimizer or fit leaves no trace here."""
    seen = {"built": [], "fits": 0}
    real_make, real_result = fine_tune.make_fine_tune_optimizer, fine_tune.FineTuned

    def make(optimizer, train_config, learning_rate):
        built = real_make(optimizer, train_config, learning_rate)
        seen["built"].append((optimizer, type(built).__name__))
        return built

    def fitted(*args, **kwargs):
        seen["fits"] += 1
        return real_result(*args, **kwargs)

    monkeypatch.setattr(fine_tune, "make_fine_tune_optimizer", make)
    monkeypatch.setattr(fine_tune, "FineTuned", fitted)
    return seen


def test_training_phases_fit_through_the_loop_with_the_recipe(loop, tiny_config, make_images, tmp_path):
    from edgecls.training.trainer import train

    train(tiny_config(make_images(tmp_path / "data", per_class=8), epochs=1), tmp_path / "run", verbose=0)
    assert loop["built"] == [("recipe", "AdamW")] and loop["fits"] == 1  # tiny_config's recipe: adamw


def test_qat_and_pruning_fit_through_the_loop_and_their_sidecars_say_with_what(loop, colour_run):
    from edgecls.compression.prune_finetune import pruned_model
    from edgecls.compression.pruning import prune_run
    from edgecls.compression.quantization import quantize_run
    from edgecls.training.run_context import load_run

    (qat,) = quantize_run(colour_run, qat=True, epochs=1, optimizer="recipe", verbose=0)
    made = json.loads(qat.path.with_suffix(".json").read_text())["qat"]
    assert loop["built"] == [("recipe", "AdamW")] and loop["fits"] == 1  # the colour run's recipe: adamw
    assert (made["optimizer"], made["optimizer_class"]) == ("recipe", "AdamW")
    assert made["lr"] == pytest.approx(0.01 * fine_tune.RECIPE_LR_FRACTION)  # the run trained at 0.01

    report = prune_run(colour_run, target=0.5, epochs=1, optimizer="adam", verbose=0)
    assert loop["built"][-1] == ("adam", "Adam") and loop["fits"] == 2
    assert (report["optimizer"], report["lr"]) == ("adam", fine_tune.ADAM_LR)
    (pruned_int8,) = quantize_run(colour_run, int8=True, model="exports/pruned.keras", calibration=8, verbose=0)
    for name in ("pruned.json", "pruned_float32.json", pruned_int8.path.with_suffix(".json").name):
        pruning = json.loads((colour_run / "exports" / name).read_text())["pruning"]
        assert (pruning["optimizer"], pruning["optimizer_class"], pruning["lr"]) == ("adam", "Adam", 1e-4), name

    _, _, tuning = pruned_model(load_run(colour_run, verbose=0), 0.5, epochs=1, optimizer="recipe")
    assert loop["built"][-1] == ("recipe", "AdamW") and loop["fits"] == 3
    assert tuning["optimizer_class"] == "AdamW"


def test_the_recipes_rate_continues_where_its_schedule_ended():
    config = RunConfig()
    config.model.weights, config.train.optimizer, config.train.lr = "none", "sgd", 0.1
    assert fine_tune.default_lr("recipe", config) == pytest.approx(1e-3)
    config.model.weights, config.train.epochs, config.train.fine_tune_lr = "imagenet", 6, 1e-4
    assert fine_tune.default_lr("recipe", config) == pytest.approx(1e-6)  # the fine-tune phase came last
    assert fine_tune.default_lr("Adam", config) == fine_tune.ADAM_LR


@pytest.mark.parametrize("command", [["quantize", "--qat"], ["prune"], ["optimize"]])
def test_an_unknown_fine_tuning_optimizer_is_one_line(command, tmp_path, capsys):
    from edgecls.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([command[0], str(tmp_path / "run"), *command[1:], "--fine-tune-optimizer", "sgdd"])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown fine-tuning optimizer 'sgdd'"), captured.err
    assert "Traceback" not in captured.err + captured.out
