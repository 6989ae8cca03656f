"""A replica's lean scikit-learn predict gives stock scikit-learn's predictions bit for bit (values,
dtype, shape), raises stock's errors on bad rows, and is used only for the classes and versions it
was checked against."""

from __future__ import annotations

import functools
import types
from typing import Any, NamedTuple

import pytest

# numpy, scikit-learn (and kfbox.serving.sklearn_calls, which imports numpy) are imported in the tests and in
# data() below, not at the top: every pytest worker imports every test module (~1.5 s of CPU for these).


class Empty(NamedTuple):
    """``np.empty(shape)``, made in the test."""

    shape: tuple[int, int]


@functools.cache
def data() -> types.SimpleNamespace:
    """Iris, and one random generator the tests draw from in turn, made on first use."""
    import numpy as np
    from sklearn.datasets import load_iris

    iris_x, iris_y = load_iris(return_X_y=True)
    rng = np.random.default_rng(7)
    # few distinct integer points and labels: many equidistant neighbours and tied votes
    grid_x = rng.integers(0, 4, size=(300, 3)).astype(float)
    grid_y = rng.integers(0, 4, size=300)
    return types.SimpleNamespace(IRIS_X=iris_x, IRIS_Y=iris_y, RNG=rng, GRID_X=grid_x, GRID_Y=grid_y)


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
def test_knn_iris(neighbours: int, algorithm: str) -> None:
    import numpy as np
    from sklearn.neighbors import KNeighborsClassifier

    IRIS_X, IRIS_Y, RNG = data().IRIS_X, data().IRIS_Y, data().RNG
    model = KNeighborsClassifier(n_neighbors=neighbours, algorithm=algorithm).fit(IRIS_X, IRIS_Y)
    queries = np.vstack([IRIS_X, RNG.uniform(0, 8, size=(200, 4))])
    _same(_lean(model)(queries), model.predict(queries))
    _same(_lean(model)(queries[:1].tolist()), model.predict(queries[:1].tolist()))  # a list, as kserve may pass


@pytest.mark.parametrize("neighbours", [2, 4, 6])
def test_knn_tied_votes(neighbours: int) -> None:
    import numpy as np
    from sklearn.neighbors import KNeighborsClassifier

    GRID_X, GRID_Y, RNG = data().GRID_X, data().GRID_Y, data().RNG
    model = KNeighborsClassifier(n_neighbors=neighbours).fit(GRID_X, GRID_Y)
    queries = RNG.integers(0, 4, size=(500, 3)).astype(float)
    labels = GRID_Y[model.kneighbors(queries, return_distance=False)]
    counts = np.stack([(labels == c).sum(axis=1) for c in range(4)], axis=1)
    assert ((counts == counts.max(axis=1, keepdims=True)).sum(axis=1) > 1).sum() > 50, "many tied votes"
    _same(_lean(model)(queries), model.predict(queries))


@pytest.mark.parametrize("classes", [["b", "a", "c"], [10, -3, 7], [True, False, True]])
def test_knn_class_labels_of_other_types(classes: list[Any]) -> None:
    import numpy as np
    from sklearn.neighbors import KNeighborsClassifier

    IRIS_X, IRIS_Y, RNG = data().IRIS_X, data().IRIS_Y, data().RNG
    labels = np.array(classes)[RNG.integers(0, 3, size=len(IRIS_Y))]
    model = KNeighborsClassifier(n_neighbors=5).fit(IRIS_X, labels)
    _same(_lean(model)(IRIS_X), model.predict(IRIS_X))


def test_pipeline_with_a_knn_last() -> None:
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    IRIS_X, IRIS_Y, RNG = data().IRIS_X, data().IRIS_Y, data().RNG
    model = Pipeline([("scale", StandardScaler()), ("skip", "passthrough"),
                      ("knn", KNeighborsClassifier(n_neighbors=4))]).fit(IRIS_X, IRIS_Y)
    queries = RNG.uniform(0, 8, size=(300, 4))
    _same(_lean(model)(queries), model.predict(queries))


@pytest.mark.parametrize("rows", [
    [[1.0, 2.0, 3.0]],  # three features for four
    [[float("nan"), 1.0, 2.0, 3.0]],
    [[float("inf"), 1.0, 2.0, 3.0]],
    [["a", "b", "c", "d"]],
    Empty((0, 4)),
    [1.0, 2.0, 3.0, 4.0],  # 1-D
])
def test_bad_rows_get_stock_errors(rows: Any) -> None:
    import numpy as np
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    IRIS_X, IRIS_Y = data().IRIS_X, data().IRIS_Y
    rows = np.empty(rows.shape) if isinstance(rows, Empty) else rows
    for model in (KNeighborsClassifier().fit(IRIS_X, IRIS_Y),
                  Pipeline([("scale", StandardScaler()), ("knn", KNeighborsClassifier())]).fit(IRIS_X, IRIS_Y)):
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
def test_other_models_keep_stock_predict(kind: str) -> None:
    from kfbox.serving.sklearn_calls import serving_predict

    model = other_model(kind).fit(data().IRIS_X, data().IRIS_Y)
    assert serving_predict(model) == model.predict


def test_an_unverified_scikit_learn_keeps_stock_predict(monkeypatch: pytest.MonkeyPatch) -> None:
    import sklearn
    from sklearn.neighbors import KNeighborsClassifier

    from kfbox.serving.sklearn_calls import serving_predict

    model = KNeighborsClassifier().fit(data().IRIS_X, data().IRIS_Y)
    assert serving_predict(model) != model.predict
    monkeypatch.setattr(sklearn, "__version__", "1.99.0")
    assert serving_predict(model) == model.predict


def test_rows_the_checks_would_convert_or_warn_about_still_get_them() -> None:
    import numpy as np
    import pandas as pd
    from sklearn.neighbors import KNeighborsClassifier

    IRIS_X, IRIS_Y = data().IRIS_X, data().IRIS_Y
    model = KNeighborsClassifier().fit(IRIS_X, IRIS_Y)
    for rows in (np.asfortranarray(IRIS_X), IRIS_X.astype(np.float32), IRIS_X.round().astype(int), IRIS_X[::2]):
        _same(_lean(model)(rows), model.predict(rows))
    named = KNeighborsClassifier().fit(pd.DataFrame(IRIS_X, columns=list("abcd")), IRIS_Y)
    with pytest.warns(UserWarning, match="does not have valid feature names") as stock:
        expected = named.predict(IRIS_X)
    with pytest.warns(UserWarning, match="does not have valid feature names") as lean:
        _same(_lean(named)(IRIS_X), expected)
    assert [str(w.message) for w in lean] == [str(w.message) for w in stock]
