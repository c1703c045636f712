"""``edgecls demo`` end to end: train, optimize, export, bench, Pi bundle and the bundle's pi_infer.py."""

import json


def test_demo_runs_the_whole_product(tmp_path, capsys):
    from edgecls.demo import run_demo

    out = tmp_path / "demo"
    result = run_demo(out, epochs=2, time_budget="15s", verbose=0)
    stages = [row["stage"] for row in result.stages]
    assert stages[0] == "Keras float32"
    assert {"TFLite float32", "TFLite int8", "ONNX float32"} <= set(stages)
    assert stages[-1].startswith("pi_infer.py (")
    assert all(row["size_bytes"] > 0 for row in result.stages)
    # every benchmarked stage measured on the test split, and the bundle agreed on its images
    assert all(0.0 <= row["top1"] <= 1.0 for row in result.stages)
    assert all(row["latency_ms"] > 0 for row in result.stages[:-1])
    assert (result.bundle / "pi_infer.py").is_file() and (out / "report.html").is_file()
    assert json.loads((out / "exports" / "bench.json").read_text())
    assert (out / "exports" / "optimize" / "leaderboard.json").is_file()
    assert (out / "gradcam" / "gradcam.json").is_file()
    report = (out / "report.html").read_text()
    assert "Grad-CAM" in report and "leaderboard" in report.lower()

    # The closing table and the three commands to run next (what `edgecls demo` prints last).
    from edgecls.demo import print_summary

    capsys.readouterr()
    print_summary(result)
    printed = capsys.readouterr().out
    assert "TFLite int8" in printed and "pi_infer.py" in printed and "edgecls optimize runs/mine" in printed
