"""The demo really learns: at demo scale (same synthetic data, model and schedule shape, fewer epochs)
the trained network is far above an untrained one on the synthetic val set, with GT boxes."""

from __future__ import annotations

from okspose.recipe.demo import run_demo


def test_demo_scale_training_learns(tmp_path):
    stats = run_demo(tmp_path, overrides=["train.epochs=4", "train.lr_steps=[3]", "train.progress=false",
                                          # pinned: the same on every CPU
                                          "train.amp=none", "test.amp=none", "test.engine=torch"],
                     with_detector=False)
    untrained, trained = stats["untrained"]["AP"], stats["trained"]["AP"]
    assert untrained < 0.05
    assert trained > untrained + 0.3, stats
    assert (tmp_path / "pictures" / "overview.jpg").exists()
    assert (tmp_path / "results_gt_boxes.json").exists()
