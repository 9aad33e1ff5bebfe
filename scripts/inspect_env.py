"""Show how hmbrl sees an environment: ``python -m scripts.inspect_env --env X [--config C] [--set k=v]``.

Prints the observation and action spaces, which observation key goes to which encoder (CNN or
MLP, after ``encoder.cnn_keys`` / ``encoder.mlp_keys``) and which the world model only
reconstructs or only reads (``decoder.*_keys``), and the result of Gymnasium's ``check_env``.

Exit status: 0 the agent takes the environment and ``check_env`` passes; 1 it was inspected and the
agent cannot take it or ``check_env`` failed; 2 an error you can fix before anything
is inspected: a bad config, ``--import`` or an environment that cannot be built (one paragraph on
stderr, the traceback with --debug).
"""

from __future__ import annotations

import argparse
import sys
import warnings

from scripts.common import add_config_flags, import_modules, report_user_errors, resolve_config


@report_user_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser)
    args = parser.parse_args(argv)
    import_modules(args.imports)
    config = resolve_config(args)  # a ConfigError is reported as one paragraph, exit status 2

    from gymnasium.utils.env_checker import check_env

    from agents.spaces import SpaceError, action_layout, observation_layout
    from configs.sections import agent_sections
    from envs.probe import build_env

    env = build_env(config["env_id"], config["env"])  # EnvProbeError, EnvConfigError: exit status 2
    print(f"environment: {config['env_id']}")
    print(f"observation space: {env.observation_space}")
    print(f"action space: {env.action_space}")
    status = 0
    try:
        sections = agent_sections(config)
        encoder, decoder = sections.encoder, sections.decoder
        layout = observation_layout(env.observation_space, encoder.mlp_keys, encoder.cnn_keys,
                                    decoder.mlp_keys, decoder.cnn_keys)
        role = lambda key, net: (f" -> {net} decoder only (a reconstruction target)" if key in layout.decoder_only
                                 else f" -> {net} encoder" + (", not reconstructed" if key in layout.encoder_only else ""))
        for key, shape in layout.cnn_shapes.items():
            scaling = "" if layout.dtypes[key] == "uint8" else " (symlog)"
            print(f"  {key}: {shape} {layout.dtypes[key]}{role(key, 'CNN')}{scaling}")
        for key, shape in layout.mlp_shapes.items():
            print(f"  {key}: {shape}{role(key, 'MLP')} (symlog)")
        for key, stream in layout.event_streams.items():
            print(f"  {key}: ({stream.max_events}, 4) events of a {stream.height}x{stream.width} sensor, count in "
                  f"{stream.count_key!r} -> event encoder ({config['world_model']['event_encoder']['backbone']})"
                  + ("" if key in layout.encoder_only else ", its count frame reconstructed"))
        actions = action_layout(env.action_space)
        kind = "one-hot of" if actions.discrete else "continuous in [-1, 1]^"
        print(f"agent actions: {kind} {actions.dim}")
    except SpaceError as error:
        print(f"NOT SUPPORTED: {error}")
        status = 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            check_env(env, skip_render_check=True)
            print("gymnasium check_env: passed" + (f" with {len(caught)} warning(s):" if caught else ""))
        except Exception as error:  # noqa: BLE001 - report whatever the checker found
            print(f"gymnasium check_env: FAILED: {error}")
            status = 1
        for warning in caught:
            print(f"  warning: {warning.message}")
    env.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
