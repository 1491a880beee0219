"""Plots of problems with matplotlib: a mesh and its partition, a nodal field, a sparsity
pattern.

Each function draws on ``ax`` if given, otherwise on a new
:class:`matplotlib.figure.Figure` that is not registered with pyplot (no
window opens, nothing to close but the object itself), and returns the figure.
"""
from __future__ import annotations

import numpy as np
import torch

from ..core.csr import CSRMatrix
from .mesh import Mesh
from .problem import Problem

__all__ = ["plot_mesh", "plot_field", "plot_sparsity"]


def _axes(ax, figsize):
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _numpy(x) -> np.ndarray:
    return np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x)


def _triangulation(mesh: Mesh):
    from matplotlib.tri import Triangulation
    return Triangulation(mesh.points[:, 0], mesh.points[:, 1], mesh.triangles)


def plot_mesh(problem, partition=None, *, ax=None, edges: bool | None = None,
              cmap: str = "tab20", figsize=(6, 6)):
    """The mesh of a problem (or a :class:`Mesh`), triangles coloured by subdomain.

    Parameters
    ----------
    problem : Problem or Mesh
    partition : Partition, optional
        Default: the problem's. Each triangle takes the subdomain of its free
        vertices (the most frequent; Dirichlet-only triangles are grey);
        nodes in the overlap of some subdomain are marked with dots, the
        Dirichlet nodes with black dots. Without a partition, triangles are
        drawn unfilled.
    edges : bool, optional
        Draw the triangle edges (default: when there are at most 20 000 triangles).

    A problem without a mesh but with 2D coordinates (a grid) is drawn as
    its nodes, coloured by subdomain.

    Examples
    --------
    >>> from learnsolve.problems import disk, fem_problem, plot_mesh
    >>> p = fem_problem(disk(0.3)).with_partition(3)
    >>> fig = plot_mesh(p)
    >>> len(fig.axes[0].collections[0].get_paths()) == p.mesh.num_triangles
    True
    """
    mesh = problem if isinstance(problem, Mesh) else getattr(problem, "mesh", None)
    if partition is None and isinstance(problem, Problem):
        partition = problem.partition
    fig, ax = _axes(ax, figsize)
    ax.set_aspect("equal")
    if mesh is None:
        if not isinstance(problem, Problem) or problem.coordinates is None or \
                problem.coordinates.shape[1] != 2:
            raise ValueError("problem: expected a Mesh, or a Problem with a mesh or 2D "
                             "coordinates")
        xy = _numpy(problem.coordinates)
        colour = None if partition is None else _numpy(partition.membership)
        ax.scatter(xy[:, 0], xy[:, 1], c=colour, cmap=cmap if colour is not None else None,
                   s=max(1.0, 2000.0 / len(xy)))
        ax.set_title(problem.name)
        return fig
    tri = _triangulation(mesh)
    if edges is None:
        edges = mesh.num_triangles <= 20_000
    if partition is None:
        ax.tripcolor(tri, facecolors=np.zeros(mesh.num_triangles), cmap="Greys", vmin=0, vmax=1,
                     edgecolors="k" if edges else "none", linewidth=0.3)
    else:
        if partition.num_nodes != mesh.num_free:
            raise ValueError(f"partition: expected one over the {mesh.num_free} free nodes of "
                             f"the mesh, got one over {partition.num_nodes}")
        node_part = np.full(mesh.num_nodes, -1, dtype=np.int64)
        node_part[mesh.free] = _numpy(partition.membership)
        tri_part = _majority(node_part[mesh.triangles])
        import matplotlib
        cm = matplotlib.colormaps[cmap].with_extremes(bad="lightgrey")
        if isinstance(cm, matplotlib.colors.ListedColormap):   # qualitative: cycle its colours
            colour, vmin, vmax = tri_part % cm.N, -0.5, cm.N - 0.5
        else:
            colour, vmin, vmax = tri_part, 0, max(partition.num_parts - 1, 1)
        ax.tripcolor(tri, facecolors=np.ma.masked_where(tri_part < 0, colour.astype(float)),
                     cmap=cm, vmin=vmin, vmax=vmax, edgecolors="k" if edges else "none",
                     linewidth=0.3)
        if partition.overlap > 0:
            extended = np.zeros(mesh.num_free, dtype=bool)
            for nodes, core in zip(partition.overlapped, partition.core_mask):
                extended[_numpy(nodes)[~_numpy(core)]] = True
            xy = mesh.points[mesh.free[extended]]
            ax.plot(xy[:, 0], xy[:, 1], ".", color="white", markersize=2)
    bnd = mesh.points[mesh.boundary]
    ax.plot(bnd[:, 0], bnd[:, 1], ".", color="black", markersize=1.5)
    ax.set_title(getattr(problem, "name", "") or mesh.name)
    return fig


def _majority(labels: np.ndarray) -> np.ndarray:
    """Per row of a (T, 3) label array, the most frequent label >= 0 (-1 if none)."""
    a, b, c = labels.T
    out = np.where(a >= 0, a, np.where(b >= 0, b, c))
    out = np.where((b >= 0) & (b == c), b, out)
    return out


def plot_field(problem: Problem, values, *, ax=None, cmap: str = "viridis", colorbar=True,
               figsize=(6, 5)):
    """A nodal field on a problem's mesh (interpolated on the triangles), grid (an image)
    or points (a scatter plot).

    ``values`` has one value per unknown (Dirichlet nodes of a mesh then take
    their boundary values) or, on a mesh, one per mesh node.

    Examples
    --------
    >>> from learnsolve.problems import poisson_2d, plot_field
    >>> p = poisson_2d(6, 4)
    >>> fig = plot_field(p, p.coordinates[:, 0])
    >>> fig.axes[0].images[0].get_array().shape
    (4, 6)
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"problem: expected a Problem, got {type(problem).__name__}")
    v = _numpy(values).astype(np.float64)
    fig, ax = _axes(ax, figsize)
    mesh = problem.mesh
    if mesh is not None and v.shape == (mesh.num_nodes,):
        nodal = v
    elif v.shape == (problem.num_nodes,):
        nodal = problem.mesh_values(v) if mesh is not None else None
    else:
        expected = f"({problem.num_nodes},)" + (
            f" or ({mesh.num_nodes},)" if mesh is not None else "")
        raise ValueError(f"values: expected shape {expected}, got {v.shape}")
    grid = problem.info.get("grid")
    if mesh is not None:
        artist = ax.tripcolor(_triangulation(mesh), nodal, shading="gouraud", cmap=cmap)
        ax.set_aspect("equal")
    elif grid is not None and len(grid) == 2:
        nx, ny = grid
        hx, hy = 1.0 / (nx + 1), 1.0 / (ny + 1)
        artist = ax.imshow(v.reshape(nx, ny).T, origin="lower", cmap=cmap,
                           extent=(hx / 2, 1 - hx / 2, hy / 2, 1 - hy / 2))
    elif grid is not None and len(grid) == 1:
        x = _numpy(problem.coordinates)[:, 0]
        (artist,) = ax.plot(x, v, ".-")
        colorbar = False
    elif problem.coordinates is not None and problem.coordinates.shape[1] >= 2:
        xy = _numpy(problem.coordinates)
        artist = ax.scatter(xy[:, 0], xy[:, 1], c=v, cmap=cmap, s=max(1.0, 2000.0 / len(v)))
        ax.set_aspect("equal")
    else:
        raise ValueError("problem: expected a problem with a mesh, a grid or 2D coordinates")
    if colorbar:
        fig.colorbar(artist, ax=ax)
    ax.set_title(problem.name)
    return fig


def plot_sparsity(A, *, ax=None, markersize: float | None = None, figsize=(5, 5)):
    """The sparsity pattern of a matrix (stored entries, explicit zeros included).

    ``A`` is a :class:`CSRMatrix`, a :class:`Problem` or a scipy sparse matrix.

    Examples
    --------
    >>> from learnsolve.problems import poisson_2d, plot_sparsity
    >>> p = poisson_2d(4)
    >>> fig = plot_sparsity(p)
    >>> len(fig.axes[0].lines[0].get_xdata()) == p.A.nnz
    True
    """
    import scipy.sparse as sp
    if isinstance(A, Problem):
        A = A.A
    if isinstance(A, CSRMatrix):
        rows, cols, shape = _numpy(A.row_indices()), _numpy(A.col_indices), A.shape
    elif sp.issparse(A):
        C = sp.coo_array(A)
        rows, cols, shape = C.row, C.col, C.shape
    else:
        raise TypeError(f"A: expected a CSRMatrix, a Problem or a scipy sparse matrix, got "
                        f"{type(A).__name__}")
    fig, ax = _axes(ax, figsize)
    if markersize is None:
        markersize = float(np.clip(200.0 / max(shape), 0.05, 4.0))
    ax.plot(cols, rows, "s", markersize=markersize, markeredgewidth=0, color="C0")
    ax.set_xlim(-0.5, shape[1] - 0.5)
    ax.set_ylim(shape[0] - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_title(f"{shape[0]} x {shape[1]}, {len(rows)} stored entries")
    return fig
