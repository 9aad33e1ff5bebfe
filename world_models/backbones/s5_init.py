"""Initialisation and discretisation maths of the S5 layer (Smith et al. 2023), as pure functions.

Shapes: N the size of one HiPPO block, J ``blocks``, P = J * N the full state size, P' the stored
state size (``P / 2`` with conjugate symmetry, else ``P``), H the layer width.

The continuous-time system ``x' = A x + B u``, ``y = C x + D u`` is diagonalised once at init,
``A = V Lambda V^-1``, and S5 learns ``Lambda``, ``B~ = V^-1 B`` and ``C~ = C V`` directly. ``A``
starts as the normal part of HiPPO-LegS (HiPPO-N), whose eigenvectors are orthonormal, so
``V^-1 = V^H``.

The HiPPO matrices are built with numpy in float64 (they depend only on static sizes) and cast to
the parameter dtype by the initialisers.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def hippo_legs(size: int) -> np.ndarray:
    """HiPPO-LegS matrix ``A [N, N]``: ``-sqrt(2n+1) sqrt(2k+1)`` below the diagonal,
    ``-(n+1)`` on it, zero above."""
    root = np.sqrt(1.0 + 2.0 * np.arange(size))
    return -(np.tril(np.outer(root, root)) - np.diag(np.arange(size)))


def hippo_legs_low_rank(size: int) -> np.ndarray:
    """``p [N]`` with ``A_LegS = A_N - p p^T``: ``p_n = sqrt(n + 1/2)``."""
    return np.sqrt(np.arange(size) + 0.5)


def hippo_normal(size: int) -> np.ndarray:
    """HiPPO-N ``[N, N]``, the normal part of HiPPO-LegS: ``A_LegS + p p^T``.

    It equals ``-I/2`` plus a skew-symmetric matrix: off the diagonal
    ``-sign(n - k) sqrt(2n+1) sqrt(2k+1) / 2``.
    """
    low_rank = hippo_legs_low_rank(size)
    return hippo_legs(size) + np.outer(low_rank, low_rank)


def hippo_normal_eig(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigendecomposition of HiPPO-N: ``Lambda [N]`` (complex) and orthonormal ``V [N, N]``.

    ``Re(Lambda) = -1/2`` exactly (the mean of the diagonal); the imaginary parts come from the
    Hermitian eigenproblem of ``-i K`` for the skew part ``K``, in ascending order, so for even
    ``N`` the first half holds the eigenvalues with negative imaginary part and the second half
    their conjugates.
    """
    normal = hippo_normal(size)
    diagonal = np.diagonal(normal)
    skew = normal - np.diag(diagonal)
    imaginary, vectors = np.linalg.eigh(-1j * skew)  # -iK is Hermitian: real eigenvalues, unitary V
    return np.mean(diagonal) + 1j * imaginary, vectors


class BlockDiagonalInit(NamedTuple):
    """Eigenvalues and eigenbases of the block-diagonal HiPPO-N initialisation.

    ``eigenvalues [P']``, ``eigenvectors [P, P']`` (V) and ``inverse_eigenvectors [P', P]`` (V^-1).
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    inverse_eigenvectors: np.ndarray


def stored_state_size(state_size: int, blocks: int, conj_sym: bool) -> int:
    """P' after checking that P splits into ``blocks`` blocks (of even size with ``conj_sym``)."""
    if state_size < 1 or blocks < 1 or state_size % blocks:
        raise ValueError(f"state_size {state_size} must be a positive multiple of blocks {blocks}")
    if conj_sym and (state_size // blocks) % 2:
        raise ValueError(
            f"conj_sym needs an even block size, got state_size {state_size} / blocks {blocks}"
        )
    return state_size // 2 if conj_sym else state_size


def block_diagonal_init(state_size: int, blocks: int, conj_sym: bool) -> BlockDiagonalInit:
    """Put one HiPPO-N of size ``N = P / J`` on each of the J diagonal blocks, as in S5.

    With ``conj_sym`` each block keeps the ``N / 2`` eigenvalues with negative imaginary part (and
    their eigenvectors); the dropped ones are their conjugates, which a real output recovers as
    ``2 Re(C~ x)``.
    """
    stored_state_size(state_size, blocks, conj_sym)
    block_size = state_size // blocks
    eigenvalues, vectors = hippo_normal_eig(block_size)
    kept = block_size // 2 if conj_sym else block_size
    eigenvalues, vectors = eigenvalues[:kept], vectors[:, :kept]
    eigenvectors = np.zeros((state_size, blocks * kept), complex)
    for block in range(blocks):  # a loop over J static blocks at init, not over time
        rows = slice(block * block_size, (block + 1) * block_size)
        eigenvectors[rows, block * kept : (block + 1) * kept] = vectors
    return BlockDiagonalInit(
        eigenvalues=np.tile(eigenvalues, blocks),
        eigenvectors=eigenvectors,
        inverse_eigenvectors=eigenvectors.conj().T,  # V is orthonormal per block
    )


def complex_dtype(real_dtype) -> jnp.dtype:
    """The complex dtype of the same precision: float32 -> complex64, float64 -> complex128."""
    return jnp.result_type(real_dtype, jnp.complex64)


def as_real_pair(matrix: jax.Array) -> jax.Array:
    """Complex ``[...]`` to real ``[..., 2]`` (real, imaginary): parameters stay real for optax."""
    return jnp.stack([matrix.real, matrix.imag], axis=-1)


def as_complex(pair: jax.Array) -> jax.Array:
    """Real ``[..., 2]`` (real, imaginary) to complex ``[...]``."""
    return pair[..., 0] + 1j * pair[..., 1]


def init_input_matrix(
    key: jax.Array, inverse_eigenvectors: np.ndarray, input_size: int, dtype=jnp.float32
) -> jax.Array:
    """``B~ = V^-1 B`` as a real pair ``[P', H, 2]``, with ``B [P, H]`` lecun normal.

    Lecun normal here uses the map's fan-in H (variance ``1 / H``), so that ``B u`` has unit scale
    for unit inputs whatever the state size.
    """
    full_size = inverse_eigenvectors.shape[1]
    initializer = jax.nn.initializers.lecun_normal(in_axis=-1, out_axis=-2)
    original = initializer(key, (full_size, input_size), dtype)
    return as_real_pair(jnp.asarray(inverse_eigenvectors, complex_dtype(dtype)) @ original)


def init_output_matrix(
    key: jax.Array, eigenvectors: np.ndarray, output_size: int, dtype=jnp.float32
) -> jax.Array:
    """``C~ = C V`` as a real pair ``[H, P', 2]``, with ``C [H, P]`` complex.

    The real and imaginary parts of each row of ``C`` are lecun normal over the P states (variance
    ``1 / P``), S5's default ``trunc_standard_normal``.
    """
    full_size = eigenvectors.shape[0]
    key_real, key_imag = jax.random.split(key)
    initializer = jax.nn.initializers.lecun_normal(in_axis=-1, out_axis=-2)
    shape = (output_size, full_size)
    original = initializer(key_real, shape, dtype) + 1j * initializer(key_imag, shape, dtype)
    return as_real_pair(original @ jnp.asarray(eigenvectors, complex_dtype(dtype)))


def init_log_step(
    key: jax.Array, size: int, dt_min: float = 1e-3, dt_max: float = 1e-1, dtype=jnp.float32
) -> jax.Array:
    """``log Delta [P']``, uniform in ``[log dt_min, log dt_max]``: one time scale per state."""
    if not 0.0 < dt_min <= dt_max:
        raise ValueError(f"need 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
    return jax.random.uniform(key, (size,), dtype, math.log(dt_min), math.log(dt_max))


def discretize_zoh(eigenvalues: jax.Array, step: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Zero-order hold: ``Lambda_bar = exp(Lambda Delta)``, ``gain = (Lambda_bar - 1) / Lambda``.

    ``B_bar = gain[..., None] * B~``; the gain form lets a per-element ``Delta`` (``[..., P']``)
    skip building a ``[P', H]`` matrix per element. ``expm1`` keeps small ``Lambda Delta`` accurate.
    Shapes broadcast: ``eigenvalues [P']``, ``step [..., P']``.
    """
    scaled = eigenvalues * step
    return jnp.exp(scaled), jnp.expm1(scaled) / eigenvalues


def discretize_bilinear(eigenvalues: jax.Array, step: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Bilinear (Tustin): ``Lambda_bar = (1 + Delta Lambda / 2) / (1 - Delta Lambda / 2)``,
    ``gain = Delta / (1 - Delta Lambda / 2)``. Shapes as in ``discretize_zoh``."""
    half = 0.5 * step * eigenvalues
    inverse = 1.0 / (1.0 - half)
    return inverse * (1.0 + half), inverse * step


def discretize_async(
    eigenvalues: jax.Array, step: jax.Array, interval: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Event discretisation of Schöne et al. 2024 ("async"): the state decays over the element's
    interval, ``exp(Lambda Delta dt)``, while an event is an impulse whose gain does not grow with
    the time since the previous one, ``(exp(Lambda Delta) - 1) / Lambda``."""
    decay, _ = discretize_zoh(eigenvalues, step * interval)
    _, gain = discretize_zoh(eigenvalues, step)
    return decay, jnp.broadcast_to(gain, jnp.broadcast_shapes(decay.shape, gain.shape))


def discretize_dirac(
    eigenvalues: jax.Array, step: jax.Array, interval: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Event discretisation of Schöne et al. 2024 ("dirac"): decay ``exp(Lambda Delta dt)``, each
    event added to the state with unit gain (a Dirac impulse)."""
    decay, _ = discretize_zoh(eigenvalues, step * interval)
    return decay, jnp.ones_like(decay)


def discretize(
    method: str, eigenvalues: jax.Array, step: jax.Array, interval: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """``(Lambda_bar, gain)`` by name for a learned ``step [P']`` and an optional element interval
    ``interval [..., 1]`` that multiplies it (``None``: 1). ``zoh`` and ``bilinear`` use the step
    ``Delta dt`` for both terms; ``async`` and ``dirac`` are the event variants above."""
    if method in ("zoh", "bilinear"):
        scaled = step if interval is None else step * interval
        return (discretize_zoh if method == "zoh" else discretize_bilinear)(eigenvalues, scaled)
    if method in ("async", "dirac"):
        interval = jnp.ones((), step.dtype) if interval is None else interval
        event_discretize = discretize_async if method == "async" else discretize_dirac
        return event_discretize(eigenvalues, step, interval)
    raise ValueError(f"unknown discretization {method!r}: use zoh, bilinear, async or dirac")


# Flax initialisers ``(key, shape, dtype) -> array`` for the S5 layer's parameters. Each takes the
# full state size P and rebuilds the (static, cheap) block-diagonal HiPPO-N basis when called, which
# happens only at ``init``.
Initializer = Callable[..., jax.Array]


def eigenvalue_real_log_init(state_size: int, blocks: int, conj_sym: bool) -> Initializer:
    """``log(-Re Lambda) [P']`` (``log 1/2`` for HiPPO-N); the key is not used."""

    def init(key: jax.Array, shape: tuple[int], dtype=jnp.float32) -> jax.Array:
        del key  # deterministic: the HiPPO-N spectrum
        eigenvalues = block_diagonal_init(state_size, blocks, conj_sym).eigenvalues
        return jnp.asarray(np.log(-eigenvalues.real), dtype).reshape(shape)

    return init


def eigenvalue_imag_init(state_size: int, blocks: int, conj_sym: bool) -> Initializer:
    """``Im Lambda [P']``; the key is not used."""

    def init(key: jax.Array, shape: tuple[int], dtype=jnp.float32) -> jax.Array:
        del key  # deterministic: the HiPPO-N spectrum
        eigenvalues = block_diagonal_init(state_size, blocks, conj_sym).eigenvalues
        return jnp.asarray(eigenvalues.imag, dtype).reshape(shape)

    return init


def input_matrix_init(state_size: int, blocks: int, conj_sym: bool) -> Initializer:
    """``B~`` for ``shape = (P', H, 2)``, see ``init_input_matrix``."""

    def init(key: jax.Array, shape: tuple[int, int, int], dtype=jnp.float32) -> jax.Array:
        basis = block_diagonal_init(state_size, blocks, conj_sym)
        return init_input_matrix(key, basis.inverse_eigenvectors, shape[1], dtype)

    return init


def output_matrix_init(state_size: int, blocks: int, conj_sym: bool) -> Initializer:
    """``C~`` for ``shape = (H, P', 2)``, see ``init_output_matrix``."""

    def init(key: jax.Array, shape: tuple[int, int, int], dtype=jnp.float32) -> jax.Array:
        basis = block_diagonal_init(state_size, blocks, conj_sym)
        return init_output_matrix(key, basis.eigenvectors, shape[0], dtype)

    return init


def log_step_init(dt_min: float = 1e-3, dt_max: float = 1e-1) -> Initializer:
    """``log Delta`` for ``shape = (P',)``, see ``init_log_step``."""

    def init(key: jax.Array, shape: tuple[int], dtype=jnp.float32) -> jax.Array:
        return init_log_step(key, shape[0], dt_min, dt_max, dtype)

    return init
