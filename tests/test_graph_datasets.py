"""Graph data without a download: random graphs, the stochastic block model, the
Planetoid loader (on tiny synthetic raw files written here), masks."""
import collections
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import learnsolve as ls
from learnsolve.nn import (GraphData, load_planetoid, random_graph, split_masks,
                           stochastic_block_model)
from learnsolve.nn.planetoid import PLANETOID_FILES


def is_symmetric(A: ls.CSRMatrix) -> bool:
    T = A.T
    return (torch.equal(A.crow_indices, T.crow_indices)
            and torch.equal(A.col_indices, T.col_indices) and torch.equal(A.values, T.values))


def self_loops(A: ls.CSRMatrix) -> int:
    return int((A.row_indices() == A.col_indices).sum())


# ----------------------------------------------------------------------------- random graphs

@pytest.mark.parametrize("n, degree", [(20_000, 5.0), (3_000, 2.0), (500, 40.0)])
def test_random_graph_has_the_mean_degree(n, degree):
    A = random_graph(n, degree, seed=1)
    assert A.shape == (n, n)
    assert abs(A.nnz / n - degree) < 0.03 * degree
    assert self_loops(A) == 0
    assert torch.equal(A.values, torch.ones(A.nnz))
    assert bool((A.col_indices != A.row_indices()).all())
    assert is_symmetric(A)


def test_random_graph_is_seeded(device):
    A, B = random_graph(1000, seed=3, device=device), random_graph(1000, seed=3, device=device)
    assert A.device.type == device
    assert torch.equal(A.col_indices, B.col_indices) and torch.equal(A.crow_indices,
                                                                     B.crow_indices)
    C = random_graph(1000, seed=4, device=device)
    assert not (A.nnz == C.nnz and torch.equal(A.col_indices, C.col_indices))


def test_random_graph_edge_cases(dtype):
    assert random_graph(10, 0, dtype=dtype).nnz == 0
    complete = random_graph(6, 5, dtype=dtype)
    assert complete.dtype == dtype
    assert torch.equal(complete.to_dense(), torch.ones(6, 6, dtype=dtype) - torch.eye(6,
                                                                                     dtype=dtype))
    assert random_graph(1, 0).shape == (1, 1)


def test_random_graph_errors():
    with pytest.raises(ValueError, match="num_nodes: expected an integer >= 1"):
        random_graph(0)
    with pytest.raises(ValueError, match="mean_degree: expected a finite number >= 0"):
        random_graph(10, -1)
    with pytest.raises(ValueError, match="mean_degree: expected at most num_nodes - 1 = 9"):
        random_graph(10, 9.5)
    with pytest.raises(TypeError, match="dtype: expected float32 or float64"):
        random_graph(10, dtype=torch.int64)


# ----------------------------------------------------------------------------- SBM

def test_sbm_structure_and_degrees():
    data = stochastic_block_model(6000, 3, degree_in=6.0, degree_out=2.0, num_features=7,
                                  noise=0.5, seed=2)
    A, y = data.adjacency, data.labels
    assert isinstance(data, GraphData) and data.num_classes == 3 and data.num_features == 7
    assert is_symmetric(A) and self_loops(A) == 0
    assert torch.equal(A.values, torch.ones(A.nnz))
    assert torch.equal(torch.bincount(y), torch.tensor([2000, 2000, 2000]))
    same = y[A.row_indices()] == y[A.col_indices]
    n = data.num_nodes
    assert abs(int(same.sum()) / n - 6.0) < 0.2
    assert abs(int((~same).sum()) / n - 2.0) < 0.1
    # blocks are not contiguous in the numbering
    assert not torch.equal(y, torch.sort(y).values)


def test_sbm_features_carry_the_class():
    data = stochastic_block_model(4000, 4, num_features=6, noise=0.3, seed=0)
    x, y = data.features.double(), data.labels
    for c in range(4):
        mean = x[y == c].mean(dim=0)
        expected = torch.zeros(6, dtype=torch.float64)
        expected[c] = 1.0
        torch.testing.assert_close(mean, expected, atol=0.05, rtol=0)
    noise = x - torch.nn.functional.one_hot(y, 6).double()
    assert abs(float(noise.std()) - 0.3) < 0.01


def test_sbm_masks():
    data = stochastic_block_model(3000, 5, train_per_class=20, num_val=500, num_test=1000)
    train, val, test = data.train_mask, data.val_mask, data.test_mask
    assert int(train.sum()) == 100 and int(val.sum()) == 500 and int(test.sum()) == 1000
    assert not bool((train & val).any() | (train & test).any() | (val & test).any())
    assert torch.equal(torch.bincount(data.labels[train]), torch.full((5,), 20))


def test_sbm_is_seeded(dtype, device):
    a = stochastic_block_model(500, 2, num_val=100, num_test=100, seed=7, dtype=dtype,
                               device=device)
    b = stochastic_block_model(500, 2, num_val=100, num_test=100, seed=7, dtype=dtype,
                               device=device)
    assert a.features.dtype == dtype and a.adjacency.dtype == dtype
    assert a.features.device.type == device and a.labels.device.type == device
    for field in ("features", "labels", "train_mask", "val_mask", "test_mask"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert torch.equal(a.adjacency.col_indices, b.adjacency.col_indices)
    c = stochastic_block_model(500, 2, num_val=100, num_test=100, seed=8, dtype=dtype)
    assert not torch.equal(a.labels.cpu(), c.labels)


def test_sbm_errors():
    with pytest.raises(ValueError, match="num_features: expected at least num_classes = 4"):
        stochastic_block_model(1000, 4, num_features=3)
    with pytest.raises(ValueError, match="num_val, num_test: 500 \\+ 1000 nodes asked for"):
        stochastic_block_model(1000, 4)
    with pytest.raises(ValueError, match="degree_in: too large"):
        stochastic_block_model(40, 4, degree_in=20, num_val=5, num_test=5, train_per_class=2)
    with pytest.raises(ValueError, match="noise: expected a finite number >= 0"):
        stochastic_block_model(1000, 4, noise=-1.0)
    with pytest.raises(ValueError, match="num_classes: expected at most num_nodes"):
        stochastic_block_model(3, 4)


def test_split_masks_errors():
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="train_per_class: class 0 has only 3 nodes"):
        split_masks(labels, 2, train_per_class=4, num_val=0, num_test=0)


def test_graph_data_to_and_repr():
    data = stochastic_block_model(300, 3, num_val=50, num_test=100)
    double = data.to(dtype=torch.float64)
    assert double.features.dtype == torch.float64 and double.adjacency.dtype == torch.float64
    assert double.labels.dtype == torch.int64 and double.train_mask.dtype == torch.bool
    assert data.features.dtype == torch.float32  # the original is unchanged
    text = repr(data)
    assert "nodes=300" in text and "train/val/test=60/50/100" in text


# ----------------------------------------------------------------------------- Planetoid

NUM_CLASSES, NUM_FEATURES, NUM_ALLX, NUM_TEST = 3, 5, 520, 40


def planetoid_truth(seed: int, missing=()):
    """Features, labels and a symmetric graph of a tiny Planetoid-like dataset: nodes
    [0, 520) are in allx, [520, 560) are test nodes, ``missing`` of them isolated and
    absent from test.index (as CiteSeer's)."""
    rng = np.random.default_rng(seed)
    n = NUM_ALLX + NUM_TEST
    features = rng.integers(0, 2, (n, NUM_FEATURES)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, n)
    labels[: 2 * NUM_CLASSES] = np.repeat(np.arange(NUM_CLASSES), 2)  # 2 per class in y
    features[list(missing)] = 0.0
    labels[list(missing)] = 0
    graph = collections.defaultdict(list)
    linked = np.setdiff1d(np.arange(n), missing)
    for _ in range(3 * n):
        i, j = rng.choice(linked, 2)
        graph[int(i)].append(int(j))
        graph[int(j)].append(int(i))
    graph[int(linked[0])] += [int(linked[0])]          # a self loop
    graph[int(linked[1])] += graph[int(linked[1])][:1]  # a duplicate, stored once
    graph[int(graph[int(linked[1])][0])] += [int(linked[1])]
    return features, labels, dict(graph)


def write_planetoid(folder, name, features, labels, graph, missing=(), seed=0, protocol=None,
                    old_names=False):
    rng = np.random.default_rng(seed + 1)
    one_hot = np.eye(NUM_CLASSES, dtype=np.int64)[labels]
    test_nodes = np.setdiff1d(np.arange(NUM_ALLX, NUM_ALLX + NUM_TEST), missing)
    test_index = rng.permutation(test_nodes)
    train = np.arange(2 * NUM_CLASSES)
    files = {
        "x": sp.csr_matrix(features[train]), "y": one_hot[train],
        "allx": sp.csr_matrix(features[:NUM_ALLX]), "ally": one_hot[:NUM_ALLX],
        "tx": sp.csr_matrix(features[test_index]), "ty": one_hot[test_index],
        "graph": collections.defaultdict(list, graph),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for suffix, obj in files.items():
        data = pickle.dumps(obj, protocol=2 if old_names else protocol)
        if old_names:  # the module paths of Python 2 / old scipy and numpy pickles
            data = data.replace(b"scipy.sparse._csr", b"scipy.sparse.csr")
            data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        (folder / f"ind.{name}.{suffix}").write_bytes(data)
    (folder / f"ind.{name}.test.index").write_text("\n".join(map(str, test_index)) + "\n")
    return test_index


def check_loaded(data, features, labels, graph, test_index, missing=()):
    n = NUM_ALLX + NUM_TEST
    assert data.num_nodes == n and data.num_classes == NUM_CLASSES
    np.testing.assert_array_equal(data.features.numpy(), features)
    np.testing.assert_array_equal(data.labels.numpy(), labels)
    expected = np.zeros((n, n), dtype=np.float32)
    for i, neighbours in graph.items():
        for j in neighbours:
            if i != j:
                expected[i, j] = expected[j, i] = 1.0
    np.testing.assert_array_equal(data.adjacency.to_dense().numpy(), expected)
    assert torch.equal(torch.nonzero(data.train_mask).flatten(), torch.arange(2 * NUM_CLASSES))
    assert torch.equal(torch.nonzero(data.val_mask).flatten(),
                       torch.arange(2 * NUM_CLASSES, 2 * NUM_CLASSES + 500))
    assert torch.equal(torch.nonzero(data.test_mask).flatten(),
                       torch.from_numpy(np.sort(test_index)))
    covered = data.train_mask | data.val_mask | data.test_mask
    assert not bool(covered[list(missing)].any())


@pytest.mark.parametrize("name, missing", [("cora", ()), ("citeseer", (523, 541, 550))])
def test_planetoid_standard_processing(tmp_path, name, missing):
    features, labels, graph = planetoid_truth(0, missing)
    test_index = write_planetoid(tmp_path, name, features, labels, graph, missing)
    data = load_planetoid(tmp_path, name.upper())
    check_loaded(data, features, labels, graph, test_index, missing)
    assert data.name == {"cora": "Cora", "citeseer": "CiteSeer"}[name]
    assert data.features.dtype == torch.float32 and self_loops(data.adjacency) == 0


def test_planetoid_old_pickles_pyg_layout_and_options(tmp_path):
    features, labels, graph = planetoid_truth(1)
    folder = tmp_path / "PubMed" / "raw"
    test_index = write_planetoid(folder, "pubmed", features, labels, graph, old_names=True)
    assert b"scipy.sparse.csr\n" in (folder / "ind.pubmed.x").read_bytes()
    data = load_planetoid(tmp_path, "pubmed", dtype=torch.float64)
    check_loaded(data, features, labels, graph, test_index)
    assert data.features.dtype == torch.float64 and data.adjacency.dtype == torch.float64
    normalised = load_planetoid(folder, "PubMed", normalize_features=True).features
    sums = features.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(normalised.numpy(), features / np.where(sums == 0, 1, sums),
                               rtol=1e-6)


@pytest.mark.parametrize("name, missing", [("cora", ()), ("citeseer", (530, 531))])
def test_planetoid_matches_torch_geometric(tmp_path, name, missing):
    pyg_io = pytest.importorskip("torch_geometric.io")
    features, labels, graph = planetoid_truth(2, missing)
    write_planetoid(tmp_path, name, features, labels, graph, missing)
    ours = load_planetoid(tmp_path, name)
    theirs = pyg_io.read_planetoid_data(str(tmp_path), name)
    assert torch.equal(ours.features, theirs.x)
    assert torch.equal(ours.labels, theirs.y)
    for split in ("train_mask", "val_mask", "test_mask"):
        assert torch.equal(getattr(ours, split), getattr(theirs, split))
    n = ours.num_nodes
    dense = torch.zeros(n, n).index_put_(tuple(theirs.edge_index), torch.ones(()))
    assert torch.equal(ours.adjacency.to_dense(), dense)


def test_planetoid_missing_files_error(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_planetoid(tmp_path, "Cora")
    message = str(error.value)
    assert str(tmp_path) in message
    for suffix in PLANETOID_FILES:
        assert f"ind.cora.{suffix}" in message
    assert "github.com/kimiyoung/planetoid" in message and "github.com/tkipf/gcn" in message
    # one file missing: named as missing
    features, labels, graph = planetoid_truth(0)
    write_planetoid(tmp_path, "cora", features, labels, graph)
    (tmp_path / "ind.cora.ty").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing: ind\.cora\.ty;"):
        load_planetoid(tmp_path, "cora")


def test_planetoid_refuses_other_pickles(tmp_path):
    features, labels, graph = planetoid_truth(0)
    write_planetoid(tmp_path, "cora", features, labels, graph)

    class Evil:
        def __reduce__(self):
            return (print, ("this would run",))
    (tmp_path / "ind.cora.graph").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match="refusing to load builtins.print"):
        load_planetoid(tmp_path, "cora")
    (tmp_path / "ind.cora.graph").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="ind.cora.graph: not a readable Planetoid file"):
        load_planetoid(tmp_path, "cora")


def test_planetoid_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="name: expected one of"):
        load_planetoid(tmp_path, "Reddit")
