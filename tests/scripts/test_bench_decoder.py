"""The decoder benchmark times the layers the decoder has, and both forms agree on them."""

import json

from scripts.bench_decoder import decoder_layers, main


def test_layers_are_the_decoders():
    assert decoder_layers((48, 48, 2), 16) == [(6, 6, 64, 32), (12, 12, 32, 16), (24, 24, 16, 2)]
    assert decoder_layers((7, 7, 3), 4) == [(4, 4, 4, 3)]  # one stage; sides rounded up, as the decoder starts


def test_times_both_forms_and_checks_they_agree(tmp_path, capsys):
    result = main(["--image", "16", "16", "2", "--depth", "2", "--batch", "2", "--repeats", "1",
                   "--out", str(tmp_path / "decoder")])
    assert [layer["features"] for layer in result["layers"]] == [2, 2]
    assert all(layer["max_difference"] < 1e-5 for layer in result["layers"])
    assert all(seconds > 0 for layer in result["layers"] for seconds in layer["seconds"].values())
    assert "| all |" in capsys.readouterr().out
    assert json.loads((tmp_path / "decoder.json").read_text())["depth"] == 2
