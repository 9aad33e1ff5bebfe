"""scripts.probe_event_encoders end to end at toy sizes: every encoder trains on both objectives and
is probed on steps it never saw; the table's numbers are R^2 of the right entries."""

from __future__ import annotations

import json

import numpy as np

from scripts import probe_event_encoders

TINY = ["world_model.cnn_depth=4", "world_model.event_encoder.features=8", "world_model.event_encoder.units=16",
        "world_model.event_encoder.backbones.event_s5.state_size=4",
        "world_model.event_encoder.backbones.event_s5.layers=1", "world_model.event_encoder.backbones.event_s5.blocks=1"]


def test_every_encoder_is_trained_and_probed_on_both_objectives(tmp_path, capsys):
    out = tmp_path / "encoders.json"
    report = probe_event_encoders.main(["--image-size", "16", "--train-steps", "40", "--test-steps", "24",
                                        "--updates", "3", "--batch", "4", "--max-events", "64",
                                        "--out", str(out), "--set", *TINY])
    assert report["entries"] == ["[0]", "[1]", "[2]", "[3]"]  # CartPole's x, x', theta, theta'
    assert set(report["results"]) == set(probe_event_encoders.ENCODERS)
    for encoder, objectives in report["results"].items():
        assert set(objectives) == {"state", "reconstruction"}
        for objective, result in objectives.items():
            assert len(result["r2"]) == 4 and all(np.isfinite(result["r2"])), (encoder, objective)
            assert np.isfinite(result["loss"]) and result["events_per_second"] > 0
            assert ("frame_r2" in result) == (objective == "reconstruction")
    assert json.loads(out.read_text())["results"].keys() == report["results"].keys()
    table = capsys.readouterr().out
    assert "| embedding | reconstruction |" in table and "| frame | state |" in table


def test_the_probe_config_observes_events_and_the_embedding_encoder_has_a_vector_per_pixel_and_polarity():
    import jax

    args = probe_event_encoders.parse_args(["--image-size", "16", "--set", *TINY])
    config = probe_event_encoders.probe_config(args)
    assert config["env_id"] == "event:CartPole-v1"
    assert config["env"]["event_camera"]["representation"] == "events"
    from world_models.event_encoder import EventStream

    stream = EventStream(8, "count", 16, 16, 0.04)
    model = probe_event_encoders.make_model(config, stream, "embedding", "state", 4)
    params = model.init(jax.random.PRNGKey(0), np.zeros((2, 8, 4), np.float32), np.array([3, 0]))
    table = params["params"]["EventEncoder_0"]["pixel_embedding"]["embedding"]
    assert table.shape == (16 * 16 * 2, 8)
