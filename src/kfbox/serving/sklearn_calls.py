"""Cheaper calls into scikit-learn for a served estimator, with the same predictions.

A replica calls its model's ``predict`` once per request with a handful of rows, where scikit-learn's
per-call overhead outweighs the arithmetic: for the examples' iris KNN about half of a V1 request's
CPU in the replica. :func:`serving_predict` returns the model's own ``predict`` unless this module
knows the model's code exactly, and then an equal function that leaves out what a fitted model
served one batch at a time does not need:

* ``KNeighborsClassifier`` with a KD or ball tree and uniform weights: the tree is queried in this
  thread (stock ``kneighbors`` dispatches one slice through a joblib ``Parallel``, which builds a
  pool description and inspects the function's signature on each call) and the neighbours vote with
  ``np.bincount`` instead of ``scipy.stats.mode`` (whose decorator rebuilds a signature per call).
  The vote is the same: both pick the most frequent class and, among ties, the lowest class index.
* ``Pipeline`` (metadata routing off) whose final step is one of the above: the same transforms, in
  order, then that step's lean predict; the pipeline's fitted check runs once, at load.

The request's rows are still checked with scikit-learn's own ``validate_data``, so bad input gets
stock scikit-learn's error; only rows it would pass through unchanged (a finite float64 array of the
right width) skip it. Only the exact classes, not subclasses (which may override ``predict``),
and only the versions in :data:`VERIFIED_VERSIONS` (whose source these copies were read against and
``tests/serving/test_sklearn_calls.py`` compares bit for bit); anything else keeps stock ``predict``.
No scikit-learn code is patched: the lean function closes over the fitted model.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

VERIFIED_VERSIONS = frozenset({"1.9.1"})
"""scikit-learn versions whose ``KNeighborsClassifier.predict``/``kneighbors`` and ``Pipeline.predict``
the lean functions were checked against."""

Predict = Callable[[Any], Any]


def serving_predict(model: Any) -> Predict:
    """``model.predict``, or an equal cheaper function where this module knows the model's code."""
    skip_internal_parameter_checks()
    stock: Predict = model.predict
    sklearn = sys.modules.get("sklearn")
    if sklearn is None or sklearn.__version__ not in VERIFIED_VERSIONS:
        return stock
    return _lean(model) or stock


def skip_internal_parameter_checks() -> None:
    """scikit-learn's ``skip_parameter_validation`` in the thread that loads the model, which is the
    thread kserve predicts in: a fitted model's predict calls sklearn's own validated helpers with
    arguments sklearn computed (a KNN's ``gen_even_slices``), and checking them again on every request
    was 15% of an iris KNN predict (0.88 -> 0.75 ms of CPU). The request's rows are still checked
    (``check_array``: shape, dtype, NaN), so bad input gets the same error. A model that did not
    import scikit-learn as it was unpickled does not use it: nothing to set."""
    sklearn = sys.modules.get("sklearn")
    if sklearn is not None:
        sklearn.set_config(skip_parameter_validation=True)


def _lean(model: Any) -> Predict | None:
    # the classes' modules are loaded if the model uses them (unpickling imported them): nothing to import
    neighbours = sys.modules.get("sklearn.neighbors._classification")
    pipeline = sys.modules.get("sklearn.pipeline")
    if neighbours is not None and type(model) is neighbours.KNeighborsClassifier:
        return _knn_predict(model)
    if pipeline is not None and type(model) is pipeline.Pipeline:
        return _pipeline_predict(model)
    return None


def _knn_predict(knn: Any) -> Predict | None:
    """``KNeighborsClassifier.predict`` for a tree-backed, uniformly weighted, single-output KNN."""
    from sklearn.utils import get_tags
    from sklearn.utils.validation import validate_data

    if (knn.weights != "uniform" or getattr(knn, "_fit_method", None) not in ("kd_tree", "ball_tree")
            or knn.outputs_2d_ or knn.metric == "precomputed" or not isinstance(knn.n_neighbors, int)
            or not 0 < knn.n_neighbors <= knn.n_samples_fit_ or np.ndim(knn._y) != 1):
        return None  # other branches of stock predict, or a model whose predict raises: stock
    ensure_all_finite = "allow-nan" if get_tags(knn).input_tags.allow_nan else True
    tree, neighbours, labels, classes = knn._tree, knn.n_neighbors, knn._y, knn.classes_
    n_classes = len(classes)
    width, named = knn.n_features_in_, hasattr(knn, "feature_names_in_")

    def predict(rows: Any) -> Any:
        if rows is None:  # "predict on the training set": stock's own branch
            return knn.predict(rows)
        if _checked_already(rows, width, named):
            x = rows
        else:
            x = validate_data(knn, rows, ensure_all_finite=ensure_all_finite, accept_sparse="csr", reset=False,
                              order="C")
        if not isinstance(x, np.ndarray):
            return knn.predict(rows)  # sparse: stock refuses it for trees, with its message
        nearest = tree.query(x, neighbours, return_distance=False)
        count = len(x)
        # one bincount over all rows: row i's votes for class c land in bin i * n_classes + c
        votes = (labels[nearest] + np.arange(count)[:, None] * n_classes).ravel()
        tally = np.bincount(votes, minlength=count * n_classes).reshape(count, n_classes)
        return classes.take(tally.argmax(axis=1))  # argmax: the first, i.e. lowest, of tied classes

    return predict


def _checked_already(rows: Any, width: int, named: bool) -> bool:
    """Rows ``validate_data`` would return as they are, without a warning: a C-ordered, finite, non-empty
    float64 array of the fitted width, for a model fitted without feature names (what a V1 request of
    numbers becomes). Its checks (a third of a KNN predict, half of it looking for dataframe libraries)
    are then the same answer; anything else goes through them."""
    return (type(rows) is np.ndarray and rows.dtype == np.float64 and rows.ndim == 2 and rows.shape[0] > 0
            and rows.shape[1] == width and rows.flags.c_contiguous and not named and bool(np.isfinite(rows).all()))


def _pipeline_predict(pipeline: Any) -> Predict | None:
    """``Pipeline.predict`` without metadata routing: the transforms, then the final step's lean predict."""
    import sklearn
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    if sklearn.get_config().get("enable_metadata_routing"):
        return None
    final = _lean(pipeline.steps[-1][1])
    if final is None:
        return None
    try:
        check_is_fitted(pipeline)
    except NotFittedError:
        return None
    transforms = [step.transform for _, _, step in pipeline._iter(with_final=False)]

    def predict(rows: Any) -> Any:
        for transform in transforms:
            rows = transform(rows)
        return final(rows)

    return predict
