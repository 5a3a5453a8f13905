"""Research's feature engineering, shipped with the model.

`model.code` in lifecycle.yaml lists this file, and the pipeline names its class as a
step (`features.ShapeFeatures`). mlcycle stores the file with every model trained
from it, copies it into the release's image, and always loads a model with its own
copy, never with a later edit of this file: change it, and `mlcycle release` trains,
reproduces and ships the new version. Only the classes and functions defined here
are trusted when a model is loaded.
"""

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted


class ShapeFeatures(BaseEstimator, TransformerMixin):
    """Appends two features research derived from the 30 measurements.

    - irregularity: worst_perimeter / (2 pi worst_radius), how far the outline of the
      largest nucleus is from a circle's (1 for a circle; malignant cells are ragged);
    - size bucket: mean_area in `buckets` bins of equal counts, learnt from the
      training data (0 = the smallest nuclei).
    """

    def __init__(self, buckets=4):
        self.buckets = buckets

    def fit(self, X, y=None):
        names = getattr(X, "columns", None)
        if names is None:
            raise ValueError("ShapeFeatures finds its columns by name: fit it on a DataFrame")
        # Named inputs: the serving engine then hands rows over as a DataFrame too.
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_features_in_ = len(names)
        area = np.asarray(X, dtype=float)[:, self._column("mean_area")]
        self.edges_ = np.quantile(area, np.linspace(0, 1, self.buckets + 1)[1:-1])
        return self

    def transform(self, X):
        check_is_fitted(self, "edges_")
        X = np.asarray(X, dtype=float)  # the columns in the order fit saw them
        perimeter = X[:, self._column("worst_perimeter")]
        radius = X[:, self._column("worst_radius")]
        irregularity = perimeter / (2 * np.pi * np.maximum(radius, 1e-9))
        bucket = np.searchsorted(self.edges_, X[:, self._column("mean_area")], side="right")
        return np.column_stack([X, irregularity, bucket.astype(float)])

    def _column(self, name):
        return list(self.feature_names_in_).index(name)
