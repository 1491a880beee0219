"""Problem generators: Poisson (paper eqs. 29, 32), variable-coefficient diffusion,
convection-diffusion (nonsymmetric),
finite elements on unstructured meshes (meshpy / Triangle), pyamg's gallery, domain
decompositions for restricted additive Schwarz, reproducible problem sets, and plots.

Conventions
-----------
- Dirichlet boundary nodes are eliminated: a problem's matrix is over the free
  (interior) nodes only, symmetric positive definite for the elliptic
  problems; ``problem.coordinates`` are those nodes' coordinates,
  ``problem.mesh`` keeps the whole mesh for plotting.
- Finite-difference matrices carry no ``1 / h^2`` (as the paper's eqs. 29 and
  32: unit grid spacing); 2D P1 stiffness matrices are scale-free anyway.
- Generators take ``dtype`` (default: torch's default dtype), ``device`` and
  ``seed`` (of the random right-hand sides and random fields).

Examples
--------
>>> import torch
>>> from learnsolve.problems import disk, fem_problem
>>> p = fem_problem(disk(0.1), dtype=torch.float64).with_partition(4, overlap=1)
>>> b = p.rhs(8)                          # 8 random right-hand sides, seeded
>>> b.shape == (p.num_nodes, 8), p.partition.num_parts
(True, 4)
"""
from .convection import convection_diffusion_2d, recirculating_wind
from .decomposition import Partition, adjacency, partition
from .diffusion import (JumpCoefficient, LognormalCoefficient, diffusion_2d, edge_coefficients,
                        jump_coefficient, lognormal_coefficient)
from .batch import batch_problems, block_rhs, unbatch
from .factories import (GEOMETRIES, SPD_FAMILIES, floating_subdomains,
                        random_anisotropic_problem, random_grid_problem, random_mesh_problem,
                        random_schwarz_problem, random_spd_problem)
from .files import load_matrix, matrix_files, save_matrix
from .fem import (discretisation_error, element_coefficient, fem_problem, load_vector,
                  lumped_mass, stiffness_matrix)
from .gallery import EXAMPLES, anisotropic_diffusion, load_example, stencil_problem
from .mesh import (Mesh, disk, l_shape, mesh_size, polygon, random_polygon, rectangle,
                   square_with_holes)
from .plot import plot_field, plot_mesh, plot_sparsity
from .poisson import grid_boundary, grid_coordinates, poisson_1d, poisson_2d
from .problem import Problem, ProblemSet

__all__ = [
    "Problem", "ProblemSet",
    "poisson_1d", "poisson_2d", "grid_coordinates", "grid_boundary",
    "diffusion_2d", "edge_coefficients", "LognormalCoefficient", "JumpCoefficient",
    "lognormal_coefficient", "jump_coefficient",
    "convection_diffusion_2d", "recirculating_wind",
    "Mesh", "disk", "rectangle", "l_shape", "square_with_holes", "random_polygon", "polygon",
    "mesh_size",
    "fem_problem", "stiffness_matrix", "load_vector", "lumped_mass", "element_coefficient",
    "discretisation_error",
    "EXAMPLES", "load_example", "stencil_problem", "anisotropic_diffusion",
    "Partition", "partition", "adjacency",
    "GEOMETRIES", "random_mesh_problem", "random_grid_problem", "random_schwarz_problem",
    "floating_subdomains", "SPD_FAMILIES", "random_anisotropic_problem", "random_spd_problem",
    "batch_problems", "block_rhs", "unbatch",
    "load_matrix", "save_matrix", "matrix_files",
    "plot_mesh", "plot_field", "plot_sparsity",
]
