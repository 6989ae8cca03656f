"""A replica's lean scikit-learn predict gives stock scikit-learn's predictions bit for bit (values,
dtype, shape), raises stock's errors on bad rows, and is used only for the classes and versions it
was checked against."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import sklearn
from sklearn.datasets import load_iris
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from kfbox.serving.sklearn_calls import serving_predict

IRIS_X, IRIS_Y = load_iris(return_X_y=True)
RNG = np.random.default_rng(7)
# few distinct integer points and labels: many equidistant neighbours and tied votes
GRID_X = RNG.integers(0, 4, size=(300, 3)).astype(float)
GRID_Y = RNG.integers(0, 4, size=300)


def _same(lean: Any, stock: Any) -> None:
    assert lean.dtype == stock.dtype
    assert lean.shape == stock.shape
    np.testing.assert_array_equal(lean, stock)


def _lean(model: Any) -> Any:
    predict = serving_predict(model)
    assert predict != model.predict, "the lean predict is used for this model"
    return predict


@pytest.mark.parametrize("neighbours", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("algorithm", ["kd_tree", "ball_tree", "auto"])
def test_knn_iris(neighbours: int, algorithm: str) -> None:
    model = KNeighborsClassifier(n_neighbors=neighbours, algorithm=algorithm).fit(IRIS_X, IRIS_Y)
    queries = np.vstack([IRIS_X, RNG.uniform(0, 8, size=(200, 4))])
    _same(_lean(model)(queries), model.predict(queries))
    _same(_lean(model)(queries[:1].tolist()), model.predict(queries[:1].tolist()))  # a list, as kserve may pass


@pytest.mark.parametrize("neighbours", [2, 4, 6])
def test_knn_tied_votes(neighbours: int) -> None:
    model = KNeighborsClassifier(n_neighbors=neighbours).fit(GRID_X, GRID_Y)
    queries = RNG.integers(0, 4, size=(500, 3)).astype(float)
    labels = GRID_Y[model.kneighbors(queries, return_distance=False)]
    counts = np.stack([(labels == c).sum(axis=1) for c in range(4)], axis=1)
    assert ((counts == counts.max(axis=1, keepdims=True)).sum(axis=1) > 1).sum() > 50, "many tied votes"
    _same(_lean(model)(queries), model.predict(queries))


@pytest.mark.parametrize("classes", [["b", "a", "c"], [10, -3, 7], [True, False, True]])
def test_knn_class_labels_of_other_types(classes: list[Any]) -> None:
    labels = np.array(classes)[RNG.integers(0, 3, size=len(IRIS_Y))]
    model = KNeighborsClassifier(n_neighbors=5).fit(IRIS_X, labels)
    _same(_lean(model)(IRIS_X), model.predict(IRIS_X))


def test_pipeline_with_a_knn_last() -> None:
    model = Pipeline([("scale", StandardScaler()), ("skip", "passthrough"),
                      ("knn", KNeighborsClassifier(n_neighbors=4))]).fit(IRIS_X, IRIS_Y)
    queries = RNG.uniform(0, 8, size=(300, 4))
    _same(_lean(model)(queries), model.predict(queries))


@pytest.mark.parametrize("rows", [
    [[1.0, 2.0, 3.0]],  # three features for four
    [[np.nan, 1.0, 2.0, 3.0]],
    [[np.inf, 1.0, 2.0, 3.0]],
    [["a", "b", "c", "d"]],
    np.empty((0, 4)),
    [1.0, 2.0, 3.0, 4.0],  # 1-D
])
def test_bad_rows_get_stock_errors(rows: Any) -> None:
    for model in (KNeighborsClassifier().fit(IRIS_X, IRIS_Y),
                  Pipeline([("scale", StandardScaler()), ("knn", KNeighborsClassifier())]).fit(IRIS_X, IRIS_Y)):
        with pytest.raises(Exception) as stock:
            model.predict(rows)
        with pytest.raises(type(stock.value)) as lean:
            _lean(model)(rows)
        assert str(lean.value) == str(stock.value)


class OwnKNN(KNeighborsClassifier):
    def predict(self, X: Any) -> Any:
        return np.zeros(len(X), dtype=int)


@pytest.mark.parametrize("model", [
    KNeighborsClassifier(weights="distance"),
    KNeighborsClassifier(algorithm="brute"),
    OwnKNN(),
    Pipeline([("scale", StandardScaler()), ("own", OwnKNN())]),
], ids=["distance weights", "brute force", "a subclass", "a pipeline ending in a subclass"])
def test_other_models_keep_stock_predict(model: Any) -> None:
    model.fit(IRIS_X, IRIS_Y)
    assert serving_predict(model) == model.predict


def test_an_unverified_scikit_learn_keeps_stock_predict(monkeypatch: pytest.MonkeyPatch) -> None:
    model = KNeighborsClassifier().fit(IRIS_X, IRIS_Y)
    assert serving_predict(model) != model.predict
    monkeypatch.setattr(sklearn, "__version__", "1.99.0")
    assert serving_predict(model) == model.predict


def test_rows_the_checks_would_convert_or_warn_about_still_get_them() -> None:
    import pandas as pd

    model = KNeighborsClassifier().fit(IRIS_X, IRIS_Y)
    for rows in (np.asfortranarray(IRIS_X), IRIS_X.astype(np.float32), IRIS_X.round().astype(int), IRIS_X[::2]):
        _same(_lean(model)(rows), model.predict(rows))
    named = KNeighborsClassifier().fit(pd.DataFrame(IRIS_X, columns=list("abcd")), IRIS_Y)
    with pytest.warns(UserWarning, match="does not have valid feature names") as stock:
        expected = named.predict(IRIS_X)
    with pytest.warns(UserWarning, match="does not have valid feature names") as lean:
        _same(_lean(named)(IRIS_X), expected)
    assert [str(w.message) for w in lean] == [str(w.message) for w in stock]
