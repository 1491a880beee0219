"""Graph neural network layers on the sparse core, and graph data for them.

* :class:`GCNConv`, :func:`gcn_norm`, :class:`GCN`: graph convolution
  (paper section 4.4, eq. 43), differentiable in the features, the weights
  and the adjacency's stored values.
* :class:`InterfaceNet`, :class:`MessagePassing`: learned interface conditions
  for restricted additive Schwarz (section 4.5).
* :class:`FactorNet`: from a matrix to the values of its incomplete factor
  (:class:`~learnsolve.solvers.NeuralFactor`).
* :func:`train_node_classifier`, :func:`accuracy`: a plain training loop.
* :class:`GraphData`, :func:`stochastic_block_model`, :func:`random_graph`,
  :func:`split_masks`, :func:`load_planetoid`: graphs without a download.
"""
from .datasets import GraphData, random_graph, split_masks, stochastic_block_model
from .coarse import CoarseNet, EnrichmentNet
from .factor_net import FactorNet
from .gcn import GCN, GCNConv, gcn_norm
from .interface import InterfaceNet, MessagePassing
from .planetoid import load_planetoid
from .training import NodeClassificationHistory, accuracy, train_node_classifier

__all__ = ["CoarseNet", "EnrichmentNet", "FactorNet", "GCNConv", "GCN", "gcn_norm", "InterfaceNet", "MessagePassing", "GraphData", "random_graph", "split_masks",
           "stochastic_block_model", "load_planetoid", "NodeClassificationHistory",
           "accuracy", "train_node_classifier"]
