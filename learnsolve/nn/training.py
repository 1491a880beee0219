"""A plain full-batch training loop for node classification (Kipf & Welling's setup)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from .datasets import GraphData

__all__ = ["NodeClassificationHistory", "accuracy", "train_node_classifier"]


def accuracy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> float:
    """The fraction of the nodes in ``mask`` whose largest logit is their label.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.nn import accuracy
    >>> accuracy(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]),
    ...          torch.tensor([True, True]))
    0.5
    """
    total = int(mask.sum())
    if total == 0:
        return float("nan")
    return int((logits[mask].argmax(dim=1) == labels[mask]).sum()) / total


@dataclass
class NodeClassificationHistory:
    """What :func:`train_node_classifier` recorded, one entry per epoch.

    ``loss`` is the training loss (in training mode, dropout active); the
    accuracies are those of the model in evaluation mode after the epoch's
    step. ``best_epoch`` is the epoch of the best validation accuracy (the
    first of equals), ``test_at_best_val`` the test accuracy then.
    """

    loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)

    @property
    def best_epoch(self) -> int:
        return max(range(len(self.val_accuracy)), key=lambda e: (self.val_accuracy[e], -e))

    @property
    def test_at_best_val(self) -> float:
        return self.test_accuracy[self.best_epoch]


def train_node_classifier(model: nn.Module, data: GraphData, *, epochs: int = 200,
                          lr: float = 0.01, weight_decay: float = 5e-4,
                          ) -> NodeClassificationHistory:
    """Train ``model(features, adjacency) -> logits`` on ``data``'s training nodes.

    Full batch, cross-entropy on the training mask, Adam with L2 weight decay
    on every parameter: the setup of Kipf & Welling and of paper section 4.4
    (200 epochs, lr 0.01, weight decay 5e-4). The model is left in evaluation
    mode. Seed torch beforehand for a reproducible run (initialisation and
    dropout draw from torch's global generator).

    Examples
    --------
    >>> import torch
    >>> from learnsolve.nn import GCN, stochastic_block_model, train_node_classifier
    >>> _ = torch.manual_seed(0)
    >>> data = stochastic_block_model(400, 2, num_val=100, num_test=200, noise=0.5)
    >>> history = train_node_classifier(GCN(data.num_features, 16, 2), data, epochs=50)
    >>> history.test_accuracy[-1] > 0.9
    True
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs: expected a positive integer, got {epochs!r}")
    if not isinstance(data, GraphData):
        raise TypeError(f"data: expected a learnsolve.nn.GraphData, got {type(data).__name__}")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    history = NodeClassificationHistory()
    x, adjacency, labels = data.features, data.adjacency, data.labels
    for _ in range(epochs):
        model.train()
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x, adjacency)[data.train_mask], labels[data.train_mask])
        loss.backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(x, adjacency)
        history.loss.append(float(loss.detach()))
        history.train_accuracy.append(accuracy(logits, labels, data.train_mask))
        history.val_accuracy.append(accuracy(logits, labels, data.val_mask))
        history.test_accuracy.append(accuracy(logits, labels, data.test_mask))
    return history
