"""Tests of the S5 initialisation and discretisation maths against hand-derived numbers."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from world_models.backbones.s5_init import (
    as_complex,
    as_real_pair,
    block_diagonal_init,
    discretize,
    discretize_async,
    discretize_bilinear,
    discretize_dirac,
    discretize_zoh,
    eigenvalue_imag_init,
    eigenvalue_real_log_init,
    hippo_legs,
    hippo_legs_low_rank,
    hippo_normal,
    hippo_normal_eig,
    init_input_matrix,
    init_log_step,
    init_output_matrix,
    stored_state_size,
)

ROOT3, ROOT5, ROOT15 = math.sqrt(3), math.sqrt(5), math.sqrt(15)


def test_hippo_legs_by_hand():
    expected = [[-1.0, 0.0, 0.0], [-ROOT3, -2.0, 0.0], [-ROOT5, -ROOT15, -3.0]]
    np.testing.assert_allclose(hippo_legs(3), expected, atol=1e-12)
    np.testing.assert_allclose(hippo_legs_low_rank(3), np.sqrt([0.5, 1.5, 2.5]))


def test_hippo_normal_by_hand():
    # A + p p^T: -1/2 on the diagonal, -+sqrt(2n+1) sqrt(2k+1) / 2 below / above it.
    expected = [
        [-0.5, ROOT3 / 2, ROOT5 / 2],
        [-ROOT3 / 2, -0.5, ROOT15 / 2],
        [-ROOT5 / 2, -ROOT15 / 2, -0.5],
    ]
    np.testing.assert_allclose(hippo_normal(3), expected, atol=1e-12)


def test_hippo_normal_eigenvalues_by_hand():
    # N=2: -1/2 -+ i sqrt(3)/2. N=3: a 3x3 skew matrix has eigenvalues 0, +-i sqrt(a^2+b^2+c^2) of
    # its upper entries: (3 + 5 + 15) / 4 = 23/4.
    eigenvalues, _ = hippo_normal_eig(2)
    expected = [-0.5 - 1j * ROOT3 / 2, -0.5 + 1j * ROOT3 / 2]
    np.testing.assert_allclose(eigenvalues, expected, atol=1e-12)
    eigenvalues, _ = hippo_normal_eig(3)
    root = math.sqrt(23) / 2
    np.testing.assert_allclose(eigenvalues, [-0.5 - 1j * root, -0.5, -0.5 + 1j * root], atol=1e-12)


@pytest.mark.parametrize("size", [2, 5, 8])
def test_hippo_normal_eigendecomposition_reconstructs(size):
    eigenvalues, vectors = hippo_normal_eig(size)
    np.testing.assert_allclose(vectors.conj().T @ vectors, np.eye(size), atol=1e-12)
    reconstructed = vectors @ np.diag(eigenvalues) @ vectors.conj().T
    np.testing.assert_allclose(reconstructed, hippo_normal(size), atol=1e-10)


def test_block_diagonal_init_full():
    basis = block_diagonal_init(state_size=8, blocks=2, conj_sym=False)
    block_eigenvalues, _ = hippo_normal_eig(4)
    np.testing.assert_allclose(basis.eigenvalues, np.tile(block_eigenvalues, 2), atol=1e-12)
    assert basis.eigenvectors.shape == (8, 8) and basis.inverse_eigenvectors.shape == (8, 8)
    np.testing.assert_allclose(basis.eigenvectors[:4, 4:], 0.0)  # block structure
    np.testing.assert_allclose(basis.eigenvectors[4:, :4], 0.0)
    block_matrix = np.kron(np.eye(2), hippo_normal(4))
    diagonalised = basis.inverse_eigenvectors @ block_matrix @ basis.eigenvectors
    np.testing.assert_allclose(diagonalised, np.diag(basis.eigenvalues), atol=1e-10)


def test_block_diagonal_init_conjugate_symmetry():
    basis = block_diagonal_init(state_size=8, blocks=2, conj_sym=True)
    assert basis.eigenvalues.shape == (4,)
    assert basis.eigenvectors.shape == (8, 4) and basis.inverse_eigenvectors.shape == (4, 8)
    assert np.all(basis.eigenvalues.imag < 0)  # the kept half; the rest are their conjugates
    identity = basis.inverse_eigenvectors @ basis.eigenvectors
    np.testing.assert_allclose(identity, np.eye(4), atol=1e-12)


def test_conjugate_symmetry_keeps_a_real_system_exact():
    """For real B and C, ``2 Re`` over the kept half equals the full system (here: impulse responses
    ``C Lambda_bar^k gain B`` after ZOH, for several k)."""
    key_b, key_c = jax.random.split(jax.random.key(0))
    inputs, outputs, state_size = 3, 2, 8
    b_matrix = np.asarray(jax.random.normal(key_b, (state_size, inputs)), np.float64)
    c_matrix = np.asarray(jax.random.normal(key_c, (outputs, state_size)), np.float64)

    def responses(conj_sym: bool) -> np.ndarray:
        basis = block_diagonal_init(state_size, blocks=2, conj_sym=conj_sym)
        decay, gain = discretize_zoh(basis.eigenvalues, 0.3)
        modes = np.stack([decay**k * gain for k in range(4)])  # [4, P']
        b_tilde, c_tilde = basis.inverse_eigenvectors @ b_matrix, c_matrix @ basis.eigenvectors
        response = np.einsum("hp,kp,pi->khi", c_tilde, modes, b_tilde)
        return 2 * response.real if conj_sym else response.real

    np.testing.assert_allclose(responses(True), responses(False), atol=1e-10)


def test_stored_state_size_checks():
    assert stored_state_size(8, 2, conj_sym=True) == 4
    assert stored_state_size(6, 2, conj_sym=False) == 6
    with pytest.raises(ValueError):
        stored_state_size(6, 2, conj_sym=True)  # odd block size
    with pytest.raises(ValueError):
        stored_state_size(8, 3, conj_sym=False)


def test_real_pair_round_trip():
    values = jnp.array([1.0 + 2.0j, -3.0 - 0.5j])
    np.testing.assert_allclose(as_real_pair(values), [[1.0, 2.0], [-3.0, -0.5]])
    np.testing.assert_allclose(as_complex(as_real_pair(values)), values)


def test_input_matrix_is_the_eigenbasis_of_a_lecun_normal_b():
    key, inputs = jax.random.key(1), 64
    basis = block_diagonal_init(state_size=16, blocks=2, conj_sym=False)
    b_tilde = as_complex(init_input_matrix(key, basis.inverse_eigenvectors, inputs))
    assert b_tilde.shape == (16, inputs)
    original = jax.nn.initializers.lecun_normal(in_axis=-1, out_axis=-2)(key, (16, inputs))
    np.testing.assert_allclose(basis.eigenvectors @ b_tilde, original, atol=1e-5)  # B = V B~
    assert 0.8 / math.sqrt(inputs) < float(jnp.std(original)) < 1.2 / math.sqrt(inputs)


def test_output_matrix_is_c_times_the_eigenbasis():
    key, outputs = jax.random.key(2), 32
    basis = block_diagonal_init(state_size=16, blocks=4, conj_sym=False)
    c_tilde = as_complex(init_output_matrix(key, basis.eigenvectors, outputs))
    assert c_tilde.shape == (outputs, 16)
    original = c_tilde @ basis.inverse_eigenvectors  # C = C~ V^-1
    key_real, key_imag = jax.random.split(key)
    lecun = jax.nn.initializers.lecun_normal(in_axis=-1, out_axis=-2)
    np.testing.assert_allclose(original.real, lecun(key_real, (outputs, 16)), atol=1e-5)
    np.testing.assert_allclose(original.imag, lecun(key_imag, (outputs, 16)), atol=1e-5)


def test_output_matrix_with_conjugate_symmetry_has_half_the_columns():
    basis = block_diagonal_init(state_size=8, blocks=1, conj_sym=True)
    assert init_output_matrix(jax.random.key(0), basis.eigenvectors, 5).shape == (5, 4, 2)
    assert init_input_matrix(jax.random.key(0), basis.inverse_eigenvectors, 3).shape == (4, 3, 2)


def test_log_step_uniform_in_range():
    log_step = init_log_step(jax.random.key(3), 4096, dt_min=1e-3, dt_max=1e-1)
    assert log_step.shape == (4096,)
    assert float(log_step.min()) >= math.log(1e-3) and float(log_step.max()) <= math.log(1e-1)
    middle = 0.5 * (math.log(1e-3) + math.log(1e-1))
    np.testing.assert_allclose(float(log_step.mean()), middle, atol=0.1)
    with pytest.raises(ValueError):
        init_log_step(jax.random.key(3), 4, dt_min=0.1, dt_max=0.01)


def test_eigenvalue_initialisers():
    real_log = eigenvalue_real_log_init(8, 2, True)(jax.random.key(0), (4,))
    np.testing.assert_allclose(real_log, np.full(4, math.log(0.5)), rtol=1e-6)  # Re(Lambda) = -1/2
    imag = eigenvalue_imag_init(4, 1, False)(jax.random.key(0), (4,))
    np.testing.assert_allclose(imag, hippo_normal_eig(4)[0].imag, rtol=1e-6)


def test_zoh_of_a_scalar_by_hand():
    decay, gain = discretize_zoh(jnp.array(-1.0 + 0j), 0.5)
    np.testing.assert_allclose(decay, math.exp(-0.5), rtol=1e-6)
    np.testing.assert_allclose(gain, 1 - math.exp(-0.5), rtol=1e-6)  # (e^-0.5 - 1) / -1
    decay, gain = discretize_zoh(jnp.array(1j * math.pi), 1.0)  # half a turn
    np.testing.assert_allclose(decay, -1.0, atol=1e-6)
    np.testing.assert_allclose(gain, 2j / math.pi, atol=1e-6)  # (-1 - 1) / (i pi)


def test_bilinear_of_a_scalar_by_hand():
    decay, gain = discretize_bilinear(jnp.array(-1.0 + 0j), 0.5)
    np.testing.assert_allclose(decay, 0.75 / 1.25, rtol=1e-6)
    np.testing.assert_allclose(gain, 0.5 / 1.25, rtol=1e-6)


def test_zoh_and_bilinear_agree_for_small_steps():
    eigenvalues = jnp.asarray(hippo_normal_eig(4)[0], jnp.complex64)
    zoh, bilinear = discretize_zoh(eigenvalues, 1e-3), discretize_bilinear(eigenvalues, 1e-3)
    np.testing.assert_allclose(zoh[0], bilinear[0], atol=1e-6)
    np.testing.assert_allclose(zoh[1], bilinear[1], rtol=1e-5)


def test_event_discretisations_by_hand():
    eigenvalue, step, interval = jnp.array(-2.0 + 0j), 0.25, jnp.array(3.0)
    decay, gain = discretize_async(eigenvalue, step, interval)
    np.testing.assert_allclose(decay, math.exp(-1.5), rtol=1e-6)  # over the whole interval
    np.testing.assert_allclose(gain, (1 - math.exp(-0.5)) / 2, rtol=1e-6)  # one step's impulse
    decay, gain = discretize_dirac(eigenvalue, step, interval)
    np.testing.assert_allclose(decay, math.exp(-1.5), rtol=1e-6)
    np.testing.assert_allclose(gain, 1.0)


def test_discretize_dispatch():
    eigenvalues, step = jnp.array([-1.0 + 1j, -0.5 - 2j]), jnp.array([0.1, 0.2])
    interval = jnp.array([[2.0], [1.0]])  # [2, 1]: two elements
    decay, gain = discretize("zoh", eigenvalues, step, interval)
    expected_decay, expected_gain = discretize_zoh(eigenvalues, step * interval)
    np.testing.assert_allclose(decay, expected_decay)
    np.testing.assert_allclose(gain, expected_gain)
    assert decay.shape == (2, 2)
    for method in ("zoh", "async"):  # interval 1: both are plain ZOH
        _, gain = discretize(method, eigenvalues, step)
        np.testing.assert_allclose(gain, discretize_zoh(eigenvalues, step)[1])
    with pytest.raises(ValueError):
        discretize("euler", eigenvalues, step)
