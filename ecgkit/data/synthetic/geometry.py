"""Lead systems: the Dower projection of the cardiac dipole to the 12 leads, and back; unit
vectors and rotations of the dipole."""
from __future__ import annotations

import numpy as np

#: Dower (1980) transformation, Frank X, Y, Z → I, II, V1–V6 (rows), as tabulated by
#: Edenbrandt & Pahlm (1988). X: right → left, Y: head → foot, Z: front → back.
DOWER = np.array([
    [0.632, -0.235, 0.059],    # I
    [0.235, 1.066, -0.132],    # II
    [-0.515, 0.157, -0.917],   # V1
    [0.044, 0.164, -1.387],    # V2
    [0.882, 0.098, -1.277],    # V3
    [1.213, 0.127, -0.601],    # V4
    [1.125, 0.127, -0.086],    # V5
    [0.831, 0.076, 0.230],     # V6
])

#: Inverse Dower matrix (Edenbrandt & Pahlm 1988): I, II, V1–V6 (columns, in that order) → X, Y, Z.
INVERSE_DOWER = np.array([
    # I      II      V1      V2      V3      V4      V5      V6
    [0.156, -0.010, -0.172, -0.074, 0.122, 0.231, 0.239, 0.194],   # X
    [-0.227, 0.887, 0.057, -0.019, -0.106, -0.022, 0.041, 0.048],  # Y
    [0.022, 0.102, -0.229, -0.310, -0.246, -0.063, 0.055, 0.108],  # Z
])


def derive12(eight: np.ndarray) -> np.ndarray:
    """I, II, V1–V6 (… × 8) → the 12 standard leads (Einthoven and Goldberger)."""
    i, ii = eight[..., 0], eight[..., 1]
    limb = np.stack([i, ii, ii - i, -(i + ii) / 2, i - ii / 2, ii - i / 2], axis=-1)
    return np.concatenate([limb, eight[..., 2:]], axis=-1)


def vcg_to_ecg(vcg: np.ndarray) -> np.ndarray:
    """Frank X, Y, Z (samples × 3, mV) → the 12 standard leads (samples × 12) via :data:`DOWER`."""
    return derive12(np.asarray(vcg, dtype=float) @ DOWER.T)


def ecg_to_vcg(ecg: np.ndarray) -> np.ndarray:
    """12 leads in :data:`LEADS` order (samples × 12) → X, Y, Z via :data:`INVERSE_DOWER`."""
    ecg = np.asarray(ecg, dtype=float)
    eight = np.concatenate([ecg[..., :2], ecg[..., 6:12]], axis=-1)
    return eight @ INVERSE_DOWER.T


def unit(theta: float, phi: float) -> np.ndarray:
    """Unit vector: ``theta`` the angle in the frontal plane (0° = left, +90° = foot), ``phi``
    the tilt out of it (+ = towards the back, − = towards the front), degrees."""
    t, p = np.radians(theta), np.radians(phi)
    return np.array([np.cos(p) * np.cos(t), np.cos(p) * np.sin(t), np.sin(p)])


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """Rotation matrix from small angles (radians) about X, Y and Z."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def rotations_z(angles: np.ndarray) -> np.ndarray:
    """Rotation matrices (b, 3, 3) about Z (the frontal plane) by ``angles`` (radians)."""
    c, s = np.cos(angles), np.sin(angles)
    r = np.zeros((angles.size, 3, 3))
    r[:, 0, 0], r[:, 0, 1], r[:, 1, 0], r[:, 1, 1], r[:, 2, 2] = c, -s, s, c, 1.0
    return r
