"""evaluate --tta, evaluate with several runs (ensembles), predict with several models, gradcam: end to end.

One tiny run is trained once for the module; the other members are made from it without training:
the same weights at another input size (tiny_cnn's weights do not depend on it), the same model with
its classes listed in another order, and a copy that claims other labels.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgecls.cli import main
from edgecls.data.images import load_image_array
from edgecls.errors import EdgeclsError
from edgecls.insight.evaluation import evaluate
from edgecls.insight.tta import apply_view, tta_views
from edgecls.metrics import classification_metrics

CLASSES = ("a", "b", "c")
COLOURS = {"a": (200, 40, 40), "b": (40, 200, 40), "c": (40, 40, 200)}


def write_colour_images(root: Path, per_class: int, seed: int) -> Path:
    """Each class a colour with noise and a darker band at a random height, 28×24 (not square)."""
    rng = np.random.default_rng(seed)
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.array(COLOURS[name]) + rng.integers(-40, 41, (24, 28, 3))
            band = rng.integers(0, 18)
            pixels[band:band + 6] //= 2
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / name / f"{name}{i}.png")
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from edgecls.config import RunConfig
    from edgecls.models.model_files import load_keras_model
    from edgecls.models.modeling import build_model
    from edgecls.training.callbacks import save_inference_model
    from edgecls.training.trainer import train

    root = tmp_path_factory.mktemp("insight")
    config = RunConfig()
    config.data.path = str(write_colour_images(root / "data", per_class=10, seed=0))
    config.data.img_size = 32
    config.model.arch, config.model.weights = "tiny_cnn", "none"
    config.train.epochs, config.train.batch_size, config.train.early_stopping_patience = 3, 8, 0
    a = train(config, root / "A", verbose=0).run_dir
    trained = load_keras_model(a / "model.keras")

    def member(name, model, labels):
        (root / name).mkdir()
        save_inference_model(model, root / name / "model.keras")
        (root / name / "labels.txt").write_text("\n".join(labels) + "\n")
        return root / name

    wide = build_model("tiny_cnn", 40, 3, weights="none")
    wide.set_weights(trained.get_weights())
    permuted = load_keras_model(a / "model.keras")
    order = [2, 0, 1]
    kernel, bias = permuted.get_layer("head_logits").get_weights()
    permuted.get_layer("head_logits").set_weights([kernel[:, order], bias[order]])
    test = write_colour_images(root / "test", per_class=4, seed=1)
    # A red image filed under c: a confident mistake for any model that learned the colours.
    shutil.copy(test / "a" / "a0.png", test / "c" / "mislabelled.png")
    return {"A": a, "C40": member("C40", wide, CLASSES), "P": member("P", permuted, [CLASSES[i] for i in order]),
            "D": member("D", trained, ("a", "b", "z")), "test": test}


def decoded_test_images(runs, size):
    files = sorted(p for p in runs["test"].rglob("*.png"))
    images = np.stack([load_image_array(f, size) for f in files])
    return images, np.array([CLASSES.index(f.parent.name) for f in files])


def probs_of(run, images):
    from edgecls.models.model_files import load_keras_model
    from edgecls.training.pipeline import predict_probs

    return predict_probs(load_keras_model(run / "model.keras"), images)


def confusion(out_dir):
    return json.loads((out_dir / "classification_report.json").read_text())["confusion_matrix"]


def expected_confusion(y, probs):
    return classification_metrics(y, probs, CLASSES)["confusion_matrix"]


def test_tta_with_one_view_is_the_plain_result_and_views_are_averaged(runs, tmp_path):
    plain = evaluate(runs["A"], str(runs["test"]), tmp_path / "plain", verbose=0)
    one = evaluate(runs["A"], str(runs["test"]), tmp_path / "one", tta=1, verbose=0)
    assert one["accuracy"] == one["accuracy_without_tta"] == plain["accuracy"]
    assert confusion(tmp_path / "one") == confusion(tmp_path / "plain")

    four = evaluate(runs["A"], str(runs["test"]), tmp_path / "four", tta=4, verbose=0)
    images, y = decoded_test_images(runs, 32)
    views = tta_views(4, (32, 32))
    assert four["tta"]["views"] == {"A": ["identity", "flip", "x+2", "x-2"]}
    averaged = np.mean([probs_of(runs["A"], apply_view(images, view)) for view in views], axis=0)
    assert confusion(tmp_path / "four") == expected_confusion(y, averaged)
    assert four["accuracy_without_tta"] == plain["accuracy"]
    (row,) = four["comparison"]
    assert row["tta_accuracy"] == four["accuracy"] and row["accuracy"] == plain["accuracy"]
    assert (tmp_path / "four" / "plots" / "accuracy_comparison.png").is_file()
    assert plain["misclassified"] >= 1 and (tmp_path / "plain" / "plots" / "misclassified.png").is_file()
    assert "comparison" not in plain and plain["model"] == str(runs["A"] / "model.keras")


def test_ensemble_of_two_input_sizes_is_the_mean_of_the_members(runs, tmp_path):
    metrics = evaluate([runs["A"], runs["C40"]], str(runs["test"]), verbose=0)
    out = runs["A"] / "eval_ensemble"
    assert metrics["report_dir"] == str(out) and metrics["models"] == [str(runs["A"] / "model.keras"),
                                                                        str(runs["C40"] / "model.keras")]
    small, y = decoded_test_images(runs, 32)
    large, _ = decoded_test_images(runs, 40)
    a, c = probs_of(runs["A"], small), probs_of(runs["C40"], large)
    assert not np.allclose(a, c, atol=1e-3), "the members must differ for the mean to be tested"
    assert confusion(out) == expected_confusion(y, (a + c) / 2)
    rows = {row["name"]: row for row in metrics["comparison"]}
    assert rows["A"]["accuracy"] == classification_metrics(y, a, CLASSES)["accuracy"]
    assert rows["C40"]["accuracy"] == classification_metrics(y, c, CLASSES)["accuracy"]
    assert rows["ensemble (mean of 2)"]["accuracy"] == metrics["accuracy"]
    for plot in ("accuracy_comparison.png", "misclassified.png", "confusion_matrix.png"):
        assert (out / "plots" / plot).is_file(), plot


def test_members_listing_classes_in_another_order_are_aligned(runs, tmp_path):
    alone = evaluate(runs["A"], str(runs["test"]), tmp_path / "alone", verbose=0)
    both = evaluate([runs["A"], runs["P"]], str(runs["test"]), tmp_path / "both", verbose=0)
    assert confusion(tmp_path / "both") == confusion(tmp_path / "alone")
    assert [row["accuracy"] for row in both["comparison"]] == [alone["accuracy"]] * 3


def run_main(args, capsys):
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_error(code, out, err, fragment):
    assert code == 2 and "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err


def test_evaluate_command_shows_the_table_and_refuses_mistakes(runs, tmp_path, capsys):
    code, out, err = run_main(["evaluate", runs["A"], runs["C40"], "--data", runs["test"], "--tta-count", "2",
                               "--out", tmp_path / "cli", "-q"], capsys)
    assert code == 0, err
    assert "TTA gain" in out and "ensemble (mean of 2)" in out and str(tmp_path / "cli") in out
    saved = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert len(saved["comparison"]) == 3 and all("tta_accuracy" in row for row in saved["comparison"])
    assert saved["prediction"] == "ensemble of 2 + TTA×2"

    cases = [
        (["evaluate", runs["A"], runs["D"], "--data", runs["test"]], "models must share labels: D lacks c and adds z"),
        (["evaluate", runs["A"], "--data", runs["test"], "--tta-count", "0"], "--tta-count must be at least 1"),
        (["evaluate", runs["A"], "--data", runs["test"], "--tta-count", "30"], "--tta-count must be between 1 and 18"),
        (["evaluate", runs["A"], tmp_path], "not a run folder"),
    ]
    for args, fragment in cases:
        assert_error(*run_main(args, capsys), fragment)


def test_gradcam_command_writes_a_png_per_image(runs, tmp_path, capsys):
    image = runs["test"] / "b" / "b1.png"
    code, out, err = run_main(["gradcam", runs["A"], image, runs["test"] / "a", "--out", tmp_path / "cam", "-q"],
                              capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "cam" / "gradcam.json").read_text())
    assert report["layer"] == "block2_relu" and len(report["images"]) == 5
    for record in report["images"]:
        assert Path(record["png"]).is_file() and record["label"] in CLASSES and 0 < record["score"] <= 1
    assert Image.open(report["images"][0]["png"]).size[0] > 256, "small images are drawn large enough to read"
    code, out, err = run_main(["gradcam", runs["C40"] / "model.keras", image, "--out", tmp_path / "cam40", "-q"],
                              capsys)
    assert code == 0 and "b1_gradcam.png" in out, err

    cases = [
        (["gradcam", runs["A"], image, "--out", tmp_path / "x", "--layer", "nope"],
         "no layer 'nope' in tiny_cnn; feature-map layers nearest the head: block2_relu, block2_bn"),
        (["gradcam", runs["A"], tmp_path / "missing.jpg", "--out", tmp_path / "x"], "image not found"),
        (["gradcam", tmp_path, image, "--out", tmp_path / "x"], "not a run folder"),
    ]
    for args, fragment in cases:
        assert_error(*run_main(args, capsys), fragment)


def test_predict_with_several_models_averages_their_probabilities(runs, capsys):
    from edgecls.deploy.prediction import predict_files

    images = runs["test"] / "b"
    models = [runs["A"] / "model.keras", runs["C40"] / "model.keras"]
    code, out, err = run_main(["predict", *models, images, "--json", "--top-k", "3"], capsys)
    assert code == 0, err
    assert "note: ensemble of 2 models (keras+keras)" in err
    singles = predict_files(models, [images], top_k=3)
    score = [{r["file"]: {t["label"]: t["score"] for t in r["top_k"]} for r in s.records} for s in singles]
    for record in json.loads(out):
        for top in record["top_k"]:
            expected = (score[0][record["file"]][top["label"]] + score[1][record["file"]][top["label"]]) / 2
            assert top["score"] == pytest.approx(expected, abs=1e-6)
    assert_error(*run_main(["predict", models[0], runs["D"] / "model.keras", images], capsys),
                 "models must share labels")


def test_a_run_trained_without_flips_gets_no_flipped_views(runs, tmp_path):
    run = tmp_path / "noflip"
    shutil.copytree(runs["A"], run, ignore=shutil.ignore_patterns("eval*", "checkpoints"))
    config = (run / "config.yaml").read_text()
    assert "flip: true" in config
    (run / "config.yaml").write_text(config.replace("flip: true", "flip: false"))
    metrics = evaluate(run, str(runs["test"]), tmp_path / "out", tta=3, verbose=0)
    assert metrics["tta"]["views"] == {"noflip": ["identity", "x+2", "x-2"]}


def test_a_keras_file_takes_labels_from_its_sidecar_or_its_run(runs, tmp_path):
    from edgecls.insight.sources import load_model_source

    (runs["A"] / "exports").mkdir(exist_ok=True)
    exported = runs["A"] / "exports" / "copy.keras"
    shutil.copy(runs["A"] / "model.keras", exported)
    _, source = load_model_source(exported)
    assert source.run_dir == runs["A"] and source.labels == list(CLASSES) and source.config is not None

    loose = tmp_path / "loose.keras"
    shutil.copy(runs["A"] / "model.keras", loose)
    (tmp_path / "loose.json").write_text(json.dumps({"labels": ["x", "y", "w"], "input": {}}))
    _, source = load_model_source(loose)
    assert source.run_dir is None and source.labels == ["x", "y", "w"] and source.name == "loose.keras"
    (tmp_path / "loose.json").unlink()
    with pytest.raises(EdgeclsError, match="no labels for .*loose.keras: expected a sidecar loose.json"):
        load_model_source(loose)
