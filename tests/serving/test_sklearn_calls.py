"""A replica's lean scikit-learn predict gives stock scikit-learn's predictions bit for bit (values,
dtype, shape), raises stock's errors on bad rows, and is used only for the classes and versions it
was checked against."""

from __future__ import annotations

import types
from typing import Any, NamedTuple

import pytest

# numpy, scikit-learn (and kfbox.serving.sklearn_calls, which imports numpy) are imported in the tests and in
# the data fixture below, not at the top: every pytest worker imports every test module (~1.5 s of CPU for these).


class Empty(NamedTuple):
    """``np.empty(shape)``, made in the test."""

    shape: tuple[int, int]


@pytest.fixture(scope="module")
def data() -> types.SimpleNamespace:
    """Iris, and one random generator the tests draw from in turn."""
    import numpy as np
    from sklearn.datasets import load_iris

    iris_x, iris_y = load_iris(return_X_y=True)
    rng = np.random.default_rng(7)
    # few distinct integer points and labels: many equidistant neighbours and tied votes
    grid_x = rng.integers(0, 4, size=(300, 3)).astype(float)
    grid_y = rng.integers(0, 4, size=300)
    return types.SimpleNamespace(iris_x=iris_x, iris_y=iris_y, rng=rng, grid_x=grid_x, grid_y=grid_y)


def _same(lean: Any, stock: Any) -> None:
    assert lean.dtype == stock.dtype
    assert lean.shape == stock.shape
    import numpy as np

    np.testing.assert_array_equal(lean, stock)


def _lean(model: Any) -> Any:
    from kfbox.serving.sklearn_calls import serving_predict

    predict = serving_predict(model)
    assert predict != model.predict, "the lean predict is used for this model"
    return predict


@pytest.mark.parametrize("neighbours", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("algorithm", ["kd_tree", "ball_tree", "auto"])
def test_knn_iris(neighbours: int, algorithm: str, data: types.SimpleNamespace) -> None:
    import numpy as np
    from sklearn.neighbors import KNeighborsClassifier

    model = KNeighborsClassifier(n_neighbors=neighbours, algorithm=algorithm).fit(data.iris_x, data.iris_y)
    queries = np.vstack([data.iris_x, data.rng.uniform(0, 8, size=(200, 4))])
    _same(_lean(model)(queries), model.predict(queries))
    _same(_lean(model)(queries[:1].tolist()), model.predict(queries[:1].tolist()))  # a list, as kserve may pass


@pytest.mark.parametrize("neighbours", [2, 4, 6])
def test_knn_tied_votes(neighbours: int, data: types.SimpleNamespace) -> None:
    import numpy as np
    from sklearn.neighbors import KNeighborsClassifier

    model = KNeighborsClassifier(n_neighbors=neighbours).fit(data.grid_x, data.grid_y)
    queries = data.rng.integers(0, 4, size=(500, 3)).astype(float)
    labels = data.grid_y[model.kneighbors(queries, return_distance=False)]
    counts = np.stack([(labels == c).sum(axis=1) for c in range(4)], axis=1)
    assert ((counts == counts.max(axis=1, keepdims=True)).sum(axis=1) > 1).sum() > 50, "many tied votes"
    _same(_lean(model)(queries), model.predict(queries))


@pytest.mark.parametrize("classes", [["b", "a", "c"], [10, -3, 7], [True, False, True]])
def test_knn_class_labels_of_other_types(classes: list[Any], data: types.SimpleNamespace) -> None:
    import numpy as np
    from sklearn.neighbors import KNeighborsClassifier

    labels = np.array(classes)[data.rng.integers(0, 3, size=len(data.iris_y))]
    model = KNeighborsClassifier(n_neighbors=5).fit(data.iris_x, labels)
    _same(_lean(model)(data.iris_x), model.predict(data.iris_x))


def test_pipeline_with_a_knn_last(data: types.SimpleNamespace) -> None:
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    model = Pipeline([("scale", StandardScaler()), ("skip", "passthrough"),
                      ("knn", KNeighborsClassifier(n_neighbors=4))]).fit(data.iris_x, data.iris_y)
    queries = data.rng.uniform(0, 8, size=(300, 4))
    _same(_lean(model)(queries), model.predict(queries))


@pytest.mark.parametrize("rows", [
    [[1.0, 2.0, 3.0]],  # three features for four
    [[float("nan"), 1.0, 2.0, 3.0]],
    [[float("inf"), 1.0, 2.0, 3.0]],
    [["a", "b", "c", "d"]],
    Empty((0, 4)),
    [1.0, 2.0, 3.0, 4.0],  # 1-D
])
def test_bad_rows_get_stock_errors(rows: Any, data: types.SimpleNamespace) -> None:
    import numpy as np
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    rows = np.empty(rows.shape) if isinstance(rows, Empty) else rows
    x, y = data.iris_x, data.iris_y
    for model in (KNeighborsClassifier().fit(x, y),
                  Pipeline([("scale", StandardScaler()), ("knn", KNeighborsClassifier())]).fit(x, y)):
        with pytest.raises(Exception) as stock:
            model.predict(rows)
        with pytest.raises(type(stock.value)) as lean:
            _lean(model)(rows)
        assert str(lean.value) == str(stock.value)


def other_model(kind: str) -> Any:
    import numpy as np
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    class OwnKNN(KNeighborsClassifier):  # type: ignore[misc]
        def predict(self, X: Any) -> Any:
            return np.zeros(len(X), dtype=int)

    return {"distance weights": lambda: KNeighborsClassifier(weights="distance"),
            "brute force": lambda: KNeighborsClassifier(algorithm="brute"),
            "a subclass": OwnKNN,
            "a pipeline ending in a subclass": lambda: Pipeline([("scale", StandardScaler()), ("own", OwnKNN())]),
            }[kind]()


@pytest.mark.parametrize("kind", ["distance weights", "brute force", "a subclass", "a pipeline ending in a subclass"])
def test_other_models_keep_stock_predict(kind: str, data: types.SimpleNamespace) -> None:
    from kfbox.serving.sklearn_calls import serving_predict

    model = other_model(kind).fit(data.iris_x, data.iris_y)
    assert serving_predict(model) == model.predict


def test_an_unverified_scikit_learn_keeps_stock_predict(monkeypatch: pytest.MonkeyPatch,
                                                        data: types.SimpleNamespace) -> None:
    import sklearn
    from sklearn.neighbors import KNeighborsClassifier

    from kfbox.serving.sklearn_calls import serving_predict

    model = KNeighborsClassifier().fit(data.iris_x, data.iris_y)
    assert serving_predict(model) != model.predict
    monkeypatch.setattr(sklearn, "__version__", "1.99.0")
    assert serving_predict(model) == model.predict


def test_rows_the_checks_would_convert_or_warn_about_still_get_them(data: types.SimpleNamespace) -> None:
    import numpy as np
    import pandas as pd
    from sklearn.neighbors import KNeighborsClassifier

    x = data.iris_x
    model = KNeighborsClassifier().fit(x, data.iris_y)
    for rows in (np.asfortranarray(x), x.astype(np.float32), x.round().astype(int), x[::2]):
        _same(_lean(model)(rows), model.predict(rows))
    named = KNeighborsClassifier().fit(pd.DataFrame(data.iris_x, columns=list("abcd")), data.iris_y)
    with pytest.warns(UserWarning, match="does not have valid feature names") as stock:
        expected = named.predict(data.iris_x)
    with pytest.warns(UserWarning, match="does not have valid feature names") as lean:
        _same(_lean(named)(data.iris_x), expected)
    assert [str(w.message) for w in lean] == [str(w.message) for w in stock]
