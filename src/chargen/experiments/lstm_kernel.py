"""A whole batch-1 training run of one tiny LSTM classifier, compiled by numba.

input table -> LSTM (Keras gate order i, f, g, o; one bias) -> dense softmax, trained on
one pair per Adam update. The parameters of one model live in one flat float32 vector (the
layout is `layout()`), so Adam is one loop over it. Every function works on one model and
releases the GIL, so callers train many models at once on threads.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# error_model="numpy": no ZeroDivisionError checks, which would stop loops from vectorising.
_JIT = {"cache": True, "fastmath": True, "nogil": True, "error_model": "numpy"}


def layout(table_rows: int, table_dim: int, inputs: int, hidden: int, classes: int) -> dict:
    """(start, shape) of each parameter in the flat vector; the table comes first."""
    shapes = {"table": (table_rows, table_dim), "w_ih": (inputs, 4 * hidden),
              "w_hh": (hidden, 4 * hidden), "b": (4 * hidden,), "w_out": (hidden, classes),
              "b_out": (classes,)}
    places, start = {}, 0
    for name, shape in shapes.items():
        places[name] = (start, shape)
        start += math.prod(shape)
    return places


@njit(**_JIT)
def _views(flat, rows, dim, inputs, hidden, classes):
    gates = 4 * hidden
    a = rows * dim
    b = a + inputs * gates
    c = b + hidden * gates
    d = c + gates
    e = d + hidden * classes
    return (flat[:a].reshape(rows, dim), flat[a:b].reshape(inputs, gates),
            flat[b:c].reshape(hidden, gates), flat[c:d], flat[d:e].reshape(hidden, classes),
            flat[e:e + classes])


@njit(**_JIT)
def _gate(z, hard):
    """sigmoid, or Keras's hard_sigmoid clip(0.2 z + 0.5, 0, 1)."""
    if hard:
        return min(max(np.float32(0.2) * z + np.float32(0.5), np.float32(0.0)), np.float32(1.0))
    return np.float32(1.0) / (np.float32(1.0) + np.exp(-z))


@njit(**_JIT)
def _gate_slope(a, hard):
    """The gate's derivative, from its output a."""
    if hard:
        return np.float32(0.2) if np.float32(0.0) < a < np.float32(1.0) else np.float32(0.0)
    return a * (1 - a)


@njit(**_JIT)
def _add_scaled_rows(out, vector, matrix):
    """out += vector @ matrix, row by row so the inner loop is contiguous."""
    for k in range(matrix.shape[0]):
        scale = vector[k]
        if scale != 0.0:
            row = matrix[k]
            for j in range(out.shape[0]):
                out[j] += scale * row[j]


@njit(**_JIT)
def _add_outer(out, vector, row):
    """out += outer(vector, row)."""
    for k in range(out.shape[0]):
        scale = vector[k]
        if scale != 0.0:
            dest = out[k]
            for j in range(row.shape[0]):
                dest[j] += scale * row[j]


@njit(**_JIT)
def _rows_dot(out, matrix, row):
    """out = matrix @ row."""
    for k in range(matrix.shape[0]):
        source = matrix[k]
        total = np.float32(0.0)
        for j in range(row.shape[0]):
            total += source[j] * row[j]
        out[k] = total


@njit(**_JIT)
def _forward(x, w_ih, w_hh, b, acts, cells, hiddens, tanh_cells, hard):
    """Run the LSTM over x (steps, inputs); row 0 of cells/hiddens is the zero state."""
    hidden = w_hh.shape[0]
    for t in range(x.shape[0]):
        z = acts[t]
        z[:] = b
        _add_scaled_rows(z, x[t], w_ih)
        _add_scaled_rows(z, hiddens[t], w_hh)
        for j in range(hidden):
            i = _gate(z[j], hard)
            f = _gate(z[hidden + j], hard)
            g = np.tanh(z[2 * hidden + j])
            o = _gate(z[3 * hidden + j], hard)
            z[j], z[hidden + j], z[2 * hidden + j], z[3 * hidden + j] = i, f, g, o
            cell = f * cells[t, j] + i * g
            cells[t + 1, j] = cell
            tanh_cells[t, j] = np.tanh(cell)
            hiddens[t + 1, j] = o * tanh_cells[t, j]


@njit(**_JIT)
def _softmax_into(h, w_out, b_out, probs):
    probs[:] = b_out
    _add_scaled_rows(probs, h, w_out)
    probs -= probs.max()
    np.exp(probs, probs)
    probs /= probs.sum()


@njit(**_JIT)
def _backward(x, ids, target, w_ih, w_hh, w_out, acts, cells, hiddens, tanh_cells, probs,
              grads, scratch, train_table, hard):
    """Adds the gradients of -log p[target] into `grads` (views of the flat layout)."""
    hidden = w_hh.shape[0]
    d_table, d_ih, d_hh, d_b, d_out, d_bout = grads
    dim = d_table.shape[1]
    dh, dc, dz, dx = scratch
    d_bout[:] = probs
    d_bout[target] -= 1.0
    _add_outer(d_out, hiddens[x.shape[0]], d_bout)
    _rows_dot(dh, w_out, d_bout)
    dc[:] = 0.0
    for t in range(x.shape[0] - 1, -1, -1):
        a = acts[t]
        for j in range(hidden):
            i, f, g, o = a[j], a[hidden + j], a[2 * hidden + j], a[3 * hidden + j]
            tc = tanh_cells[t, j]
            dcj = dc[j] + dh[j] * o * (1 - tc * tc)
            dz[j] = dcj * g * _gate_slope(i, hard)
            dz[hidden + j] = dcj * cells[t, j] * _gate_slope(f, hard)
            dz[2 * hidden + j] = dcj * i * (1 - g * g)
            dz[3 * hidden + j] = dh[j] * tc * _gate_slope(o, hard)
            dc[j] = dcj * f
        d_b += dz
        _add_outer(d_ih, x[t], dz)
        if train_table:
            _rows_dot(dx, w_ih, dz)
            for k in range(dx.shape[0]):
                d_table[ids[t, k // dim], k % dim] += dx[k]
        if t > 0:  # the state before the first step is zero and takes no gradient
            _add_outer(d_hh, hiddens[t], dz)
            _rows_dot(dh, w_hh, dz)


@njit(**_JIT)
def _gather(table, ids, x):
    """x[t] = the table rows of the ids at step t, side by side."""
    dim = table.shape[1]
    for t in range(ids.shape[0]):
        for f in range(ids.shape[1]):
            x[t, f * dim:(f + 1) * dim] = table[ids[t, f]]


@njit(**_JIT)
def _adam(params, grad, m, v, step, lr, beta1, beta2, eps):
    """Keras's Adam: eps is added to sqrt(v) before the bias correction is applied."""
    alpha = np.float32(lr * math.sqrt(1.0 - beta2 ** step) / (1.0 - beta1 ** step))
    b1, b2, e = np.float32(beta1), np.float32(beta2), np.float32(eps)
    for i in range(params.shape[0]):
        g = grad[i]
        mi = b1 * m[i] + (1 - b1) * g
        vi = b2 * v[i] + (1 - b2) * g * g
        m[i] = mi
        v[i] = vi
        params[i] -= alpha * mi / (np.sqrt(vi) + e)


@njit(**_JIT)
def train(params, m, v, shape, ids, targets, order, train_table, hard, lr, beta1, beta2, eps):
    """One Adam update per pair, in `order` (pair indices, all epochs). shape = (table
    rows, table dim, hidden, classes); ids (pairs, steps, features). Returns the mean loss
    of the last len(targets) updates. params, m and v are updated in place."""
    rows, dim, hidden, classes = shape
    steps, inputs = ids.shape[1], ids.shape[2] * dim
    table, w_ih, w_hh, b, w_out, b_out = _views(params, rows, dim, inputs, hidden, classes)
    grad = np.zeros_like(params)
    grads = _views(grad, rows, dim, inputs, hidden, classes)
    first = 0 if train_table else rows * dim  # a fixed table takes no updates
    x = np.empty((steps, inputs), np.float32)
    acts = np.empty((steps, 4 * hidden), np.float32)
    cells = np.zeros((steps + 1, hidden), np.float32)
    hiddens = np.zeros((steps + 1, hidden), np.float32)
    tanh_cells = np.empty((steps, hidden), np.float32)
    probs = np.empty(classes, np.float32)
    scratch = (np.empty(hidden, np.float32), np.empty(hidden, np.float32),
               np.empty(4 * hidden, np.float32), np.empty(inputs, np.float32))
    recent_loss = 0.0
    for n in range(order.shape[0]):
        pair = order[n]
        _gather(table, ids[pair], x)
        _forward(x, w_ih, w_hh, b, acts, cells, hiddens, tanh_cells, hard)
        _softmax_into(hiddens[steps], w_out, b_out, probs)
        if n >= order.shape[0] - targets.shape[0]:
            recent_loss -= math.log(max(probs[targets[pair]], 1e-30))
        grad[:] = 0.0
        _backward(x, ids[pair], targets[pair], w_ih, w_hh, w_out, acts, cells, hiddens,
                  tanh_cells, probs, grads, scratch, train_table, hard)
        _adam(params[first:], grad[first:], m[first:], v[first:], n + 1, lr, beta1, beta2, eps)
    return recent_loss / min(targets.shape[0], max(order.shape[0], 1))


@njit(**_JIT)
def predict(params, shape, ids, hard):
    """The argmax class of every pair."""
    rows, dim, hidden, classes = shape
    steps, inputs = ids.shape[1], ids.shape[2] * dim
    table, w_ih, w_hh, b, w_out, b_out = _views(params, rows, dim, inputs, hidden, classes)
    x = np.empty((steps, inputs), np.float32)
    acts = np.empty((steps, 4 * hidden), np.float32)
    cells = np.zeros((steps + 1, hidden), np.float32)
    hiddens = np.zeros((steps + 1, hidden), np.float32)
    tanh_cells = np.empty((steps, hidden), np.float32)
    probs = np.empty(classes, np.float32)
    out = np.empty(ids.shape[0], np.int64)
    for pair in range(ids.shape[0]):
        _gather(table, ids[pair], x)
        _forward(x, w_ih, w_hh, b, acts, cells, hiddens, tanh_cells, hard)
        _softmax_into(hiddens[steps], w_out, b_out, probs)
        out[pair] = probs.argmax()
    return out
