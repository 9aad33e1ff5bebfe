"""The backbone benchmark's variants: the GRU always, a chosen subset, Mamba once per chunk size."""

from configs.loader import load_config
from scripts.bench_backbones import parse_args, variants


def test_variants_choose_backbones_and_mamba_chunk_sizes():
    config = load_config()["backbones"]
    chosen = variants(config, ["mamba"], [0, 16])
    assert [variant.label for variant in chosen] == [
        "gru",
        "mamba (sequential, whole)",
        "mamba (sequential, chunk 16)",
        "mamba (associative, whole)",
        "mamba (associative, chunk 16)",
    ]
    assert chosen[2].kwargs == dict(config["mamba"], scan_impl="sequential", chunk_size=16)
    default = variants(config)  # every backbone, Mamba with the config's chunk size
    assert {variant.name for variant in default} == set(config)
    assert "mamba (sequential, chunk 32)" in [variant.label for variant in default]


def test_parse_args_takes_backbones_and_chunks():
    args = parse_args(["--backbones", "mamba", "--mamba-chunks", "0", "64", "--max-memory-gib", "1"])
    assert args.backbones == ["mamba"] and args.mamba_chunks == [0, 64]
