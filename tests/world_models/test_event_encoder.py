"""The event encoder against independent references: its features against hand-computed numbers,
its count frame against the event camera's numpy ``events_to_frame``, its embedding against the
backbone run alone on each unpadded stream; padding past the count never matters."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.event_camera import Events, events_to_array, events_to_frame
from world_models.backbones import BACKBONES
from world_models.distributions import symlog
from world_models.event_encoder import EventEncoder, EventStream, count_frame, event_features

STREAM = EventStream(max_events=24, count_key="count", width=8, height=6, duration=0.05)
COUNTS = np.array([[0, 3], [9, 24], [1, 17]], np.int32)  # [T=3, B=2]: empty, one chunk, several, full
# One layer: the stacking is S5's own (tested in test_s5.py), and it halves the compiles.
BACKBONE_KWARGS = {"event_s5": dict(state_size=8, layers=1, blocks=1), "gru": {}}


def random_events(rng: np.random.Generator, count: int, stream: EventStream = STREAM) -> Events:
    t = np.sort(rng.uniform(0.0, stream.duration, count))
    return Events(
        x=rng.integers(0, stream.width, count).astype(np.int32),
        y=rng.integers(0, stream.height, count).astype(np.int32),
        t=t,
        p=rng.choice(np.array([-1, 1], np.int8), count),
    )


def padded_batch(seed: int = 0, padding: float | None = None) -> tuple[np.ndarray, list[list[Events]]]:
    """Streams ``[T, B, N, 4]`` laid out by the event camera's ``events_to_array`` for ``COUNTS``;
    ``padding`` overwrites every row past the count (it must change nothing)."""
    rng = np.random.default_rng(seed)
    events = [[random_events(rng, int(count)) for count in row] for row in COUNTS]
    array = np.stack([np.stack([events_to_array(e, STREAM.max_events, 0.0)[0] for e in row]) for row in events])
    if padding is not None:
        noise = np.random.default_rng(seed + 1).normal(padding, 10.0, array.shape).astype(np.float32)
        past = np.arange(STREAM.max_events) >= COUNTS[..., None]
        array = np.where(past[..., None], noise, array)
    return array, events


def make_encoder(backbone: str = "event_s5", **overrides) -> EventEncoder:
    settings = dict(backbone=backbone, backbones=BACKBONE_KWARGS, features=8, units=6, chunk_size=5)
    return EventEncoder(STREAM, **{**settings, **overrides})


@functools.cache
def initialised(backbone: str = "event_s5", position: str = "coordinates") -> dict:
    array, _ = padded_batch()
    return jax.jit(make_encoder(backbone, position=position).init)(jax.random.PRNGKey(0), array, COUNTS)


def test_event_features_by_hand():
    # Two events of a stream with room for three: x, y at the sensor's corners, times 0.01 and 0.035 s.
    events = jnp.array([[7.0, 0.0, 0.01, 1.0], [0.0, 5.0, 0.035, -1.0], [3.0, 3.0, 0.0, 1.0]])
    features, dt = event_features(events, jnp.array(2), STREAM._replace(max_events=3), time_scale=10.0)
    # dt in units of duration / time_scale = 0.005 s: the first since the step began, then between events.
    np.testing.assert_allclose(dt, [2.0, 5.0, 0.0], rtol=1e-6)
    expected = [[1.0, -1.0, 1.0, 0.2, np.log1p(2.0)], [-1.0, 1.0, -1.0, 0.7, np.log1p(5.0)], [0.0] * 5]
    np.testing.assert_allclose(features, expected, rtol=1e-6)


def test_count_frame_equals_the_event_cameras_frame():
    array, events = padded_batch(padding=3.0)
    frames = count_frame(jnp.asarray(array), jnp.asarray(COUNTS), STREAM)
    assert frames.shape == COUNTS.shape + (STREAM.height, STREAM.width, 2)
    for t, row in enumerate(events):
        for b, stream_events in enumerate(row):
            reference = events_to_frame(stream_events, (STREAM.height, STREAM.width))
            np.testing.assert_array_equal(frames[t, b], reference)


@pytest.mark.parametrize("backbone, position", [("event_s5", "coordinates"), ("gru", "coordinates"),
                                                ("event_s5", "embedding")])
def test_embedding_does_not_depend_on_the_padding(backbone, position):
    params = initialised(backbone, position)
    apply = jax.jit(make_encoder(backbone, position=position).apply)
    zero_padded = apply(params, padded_batch()[0], COUNTS)
    for padding in (-50.0, 7.0):
        np.testing.assert_allclose(apply(params, padded_batch(padding=padding)[0], COUNTS), zero_padded, atol=1e-5)
    assert zero_padded.shape == COUNTS.shape + (6,)


def embedded_by_hand(params: dict, stream: jax.Array, features: jax.Array) -> jax.Array:
    """``position: embedding``'s backbone input: the features through the projection plus the table's
    row of each event's pixel and polarity, its index ``(y * W + x) * 2 + (p < 0)`` written out."""
    projection, table = params["params"]["event_projection"], params["params"]["pixel_embedding"]["embedding"]
    x, y, off = stream[:, 0].astype(int), stream[:, 1].astype(int), (stream[:, 3] < 0).astype(int)
    return features @ projection["kernel"] + projection["bias"] + table[(y * STREAM.width + x) * 2 + off]


def reference_embedding(encoder: EventEncoder, params: dict, stream: np.ndarray, count: int) -> np.ndarray:
    """The backbone alone (its own module, the encoder's parameters) on the unpadded stream, read at
    its last event or averaged over them, then the encoder's projection."""
    core = BACKBONES[encoder.backbone](features=encoder.features, **BACKBONE_KWARGS[encoder.backbone])
    core_params = {"params": params["params"]["core"]}
    if count == 0:
        return encoder.apply(params, params["params"]["empty"], method=EventEncoder.project)

    @jax.jit
    def run(stream):  # jitted whole: one compile per count instead of one per operation
        features, dt = event_features(stream, jnp.array(count), STREAM._replace(max_events=count),
                                      encoder.time_scale)
        if encoder.position == "embedding":
            features = embedded_by_hand(params, stream, features)
        carry = core.apply(core_params, 1, method="initial_state")
        resets = jnp.zeros((count, 1), bool)
        if encoder.backbone == "event_s5":
            _, ys = core.apply(core_params, carry, features[:, None], resets, dt[:, None], method="scan")
        else:
            _, ys = core.apply(core_params, carry, features[:, None], resets, method="scan")
        pooled = ys[-1, 0] if encoder.readout == "last" else ys[:, 0].mean(0)
        return encoder.apply(params, pooled, method=EventEncoder.project)

    return run(jnp.asarray(stream[:count]))


@pytest.mark.parametrize("backbone, readout, position", [("event_s5", "last", "coordinates"),
                                                         ("event_s5", "mean", "coordinates"),
                                                         ("gru", "last", "coordinates"),
                                                         ("event_s5", "last", "embedding")])
def test_embedding_equals_the_backbone_on_the_unpadded_stream(backbone, readout, position):
    encoder = make_encoder(backbone, readout=readout, position=position)
    params = initialised(backbone, position)
    array, _ = padded_batch(padding=1.0)
    embeddings = jax.jit(encoder.apply)(params, array, COUNTS)
    for t, b in np.ndindex(COUNTS.shape):
        expected = reference_embedding(encoder, params, array[t, b], int(COUNTS[t, b]))
        np.testing.assert_allclose(embeddings[t, b], expected, atol=2e-5, err_msg=f"stream {t, b}")


def pooled_reference(encoder: EventEncoder, params: dict, stream: np.ndarray, count: int) -> np.ndarray:
    """Both backbones by hand on the unpadded stream: the first over every event, the second over
    its outputs at events ``S-1, 2S-1, ...`` and the last one, each with the summed intervals since
    the previous kept event; read at the second's last output."""
    if count == 0:
        return encoder.apply(params, params["params"]["empty"], method=EventEncoder.project)
    kwargs = BACKBONE_KWARGS["event_s5"]
    first, second = (BACKBONES["event_s5"](features=encoder.features, **kwargs) for _ in range(2))
    kept = np.array([min(end, count) - 1 for end in range(encoder.pool_stride, count + encoder.pool_stride,
                                                          encoder.pool_stride)])

    def scan(core, name, xs, intervals):
        core_params = {"params": params["params"][name]}
        carry = core.apply(core_params, 1, method="initial_state")
        resets = jnp.zeros((xs.shape[0], 1), bool)
        return core.apply(core_params, carry, xs[:, None], resets, intervals[:, None], method="scan")[1][:, 0]

    @jax.jit
    def run(stream):  # jitted whole: one compile per count instead of one per operation
        features, dt = event_features(stream, jnp.array(count), STREAM._replace(max_events=count), encoder.time_scale)
        ys = scan(first, "core", features, dt)
        times = jnp.concatenate([jnp.zeros(1), jnp.cumsum(dt)])
        kept_dt = jnp.diff(jnp.concatenate([jnp.zeros(1), times[kept + 1]]))
        pooled = scan(second, "pooled_core", ys[kept], kept_dt)
        return encoder.apply(params, pooled[-1], method=EventEncoder.project)

    return run(jnp.asarray(stream[:count]))


def test_pooled_encoder_equals_both_backbones_by_hand_and_ignores_the_padding():
    encoder = make_encoder(pool_stride=3)
    array, _ = padded_batch(padding=1.0)
    params = jax.jit(encoder.init)(jax.random.PRNGKey(0), array, COUNTS)
    assert "pooled_core" in params["params"]
    apply = jax.jit(encoder.apply)
    embeddings = apply(params, array, COUNTS)
    np.testing.assert_allclose(apply(params, padded_batch(padding=-50.0)[0], COUNTS), embeddings, atol=1e-5)
    for t, b in np.ndindex(COUNTS.shape):
        expected = pooled_reference(encoder, params, array[t, b], int(COUNTS[t, b]))
        np.testing.assert_allclose(embeddings[t, b], expected, atol=2e-5, err_msg=f"stream {t, b}")
    with pytest.raises(ValueError, match="pool_stride"):
        make_encoder(pool_stride=0).init(jax.random.PRNGKey(0), array, COUNTS)


def test_skipped_chunks_change_nothing():
    # Only streams of at most 3 events: chunks of 5 rows past the first are never computed.
    params = initialised()
    array, _ = padded_batch()
    short = np.minimum(COUNTS, 3)
    whole = make_encoder(chunk_size=STREAM.max_events).apply(params, array, short)
    np.testing.assert_allclose(make_encoder(chunk_size=2).apply(params, array, short), whole, atol=1e-5)
    np.testing.assert_allclose(make_encoder().apply(params, array, short), whole, atol=1e-5)


@pytest.mark.parametrize("position", ["coordinates", "embedding"])
def test_gradients_are_finite_and_reach_every_parameter(position):
    params = initialised(position=position)
    array, _ = padded_batch()
    encoder = make_encoder(position=position)
    weights = jax.random.normal(jax.random.PRNGKey(1), COUNTS.shape + (6,))
    grads = jax.grad(lambda p: jnp.sum(encoder.apply(p, array, COUNTS) * weights))(params)
    for path, grad in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(grad)), path
        assert np.any(grad != 0), path  # "empty" included: one stream has no events


def test_embeddings_change_with_the_events():
    params = initialised()
    encoder = make_encoder()
    first, second = (encoder.apply(params, padded_batch(seed)[0], COUNTS) for seed in (0, 5))
    assert np.all(np.abs(first - second)[COUNTS > 0].max(-1) > 1e-3)
    np.testing.assert_allclose(first[COUNTS == 0], second[COUNTS == 0])  # no events: one embedding


def test_reconstruction_target_is_the_symlog_count_frame():
    from world_models.world_model import WorldModel

    model = WorldModel({}, {}, action_dim=2, deter=8, stoch=2, classes=2, units=8, layers=1, cnn_depth=2,
                       event_streams={"events": STREAM}, event_encoder=dict(features=8, units=6))
    array, events = padded_batch()
    targets = model.reconstruction_targets({"events": jnp.asarray(array), "count": jnp.asarray(COUNTS)})
    assert set(targets) == {"events"}  # the count is input only
    reference = events_to_frame(events[1][1], (STREAM.height, STREAM.width)).astype(np.float32)
    np.testing.assert_allclose(targets["events"][1, 1], symlog(reference), rtol=1e-6)


def test_unknown_position_is_refused():
    array, _ = padded_batch()
    with pytest.raises(ValueError, match="position must be one of"):
        make_encoder(position="pixels").init(jax.random.PRNGKey(0), array, COUNTS)
