"""Classical baselines: forward (structure -> spectrum) and the seed paper's inverse method.

Forward, per channel, on the structural descriptor of :mod:`gnnspec.bench.descriptors`:
``mean`` (the training-set mean spectrum), ``knn`` (5 nearest neighbours, distance-weighted,
standardised features) and ``gbt`` (XGBoost, multi-output trees on the first 16 principal
components of the spectra).

Inverse (the seed paper's approach): XGBoost on :mod:`gnnspec.bench.spectral_features`
(CDF features and piecewise cubic fits per 5 eV window) of the chosen channel subset;
regressors for the element fractions, classifiers for the defects.
"""

from __future__ import annotations

import numpy as np

N_PCA = 16


def forward_mean(Y_train: np.ndarray, n_test: int) -> np.ndarray:
    return np.repeat(Y_train.mean(0, keepdims=True), n_test, axis=0)


def forward_knn(X_train, Y_train, X_test, k: int = 5) -> np.ndarray:
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), KNeighborsRegressor(n_neighbors=min(k, len(X_train)), weights="distance"))
    return model.fit(X_train, Y_train).predict(X_test)


def forward_gbt(X_train, Y_train, X_test, n_estimators: int = 200, seed: int = 0) -> np.ndarray:
    from sklearn.decomposition import PCA
    from xgboost import XGBRegressor

    n_comp = min(N_PCA, len(X_train) - 1, Y_train.shape[1])
    pca = PCA(n_components=n_comp, random_state=seed).fit(Y_train)
    Z = pca.transform(Y_train)
    model = XGBRegressor(
        n_estimators=n_estimators, max_depth=4, learning_rate=0.05, subsample=0.8, colsample_bytree=0.5,
        tree_method="hist", multi_strategy="multi_output_tree", n_jobs=1, random_state=seed,
    )
    model.fit(X_train, Z)
    return pca.inverse_transform(model.predict(X_test).reshape(len(X_test), -1))


def inverse_gbt(F_train, content_train, defects_train, F_test, n_estimators: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seed method: predicted content fractions ``[n, 5]`` and defect probabilities ``[n, 2]``."""
    from xgboost import XGBClassifier, XGBRegressor

    content = np.zeros((len(F_test), content_train.shape[1]))
    for j in range(content_train.shape[1]):
        reg = XGBRegressor(n_estimators=n_estimators, max_depth=4, learning_rate=0.05, subsample=0.8, tree_method="hist", n_jobs=1, random_state=seed)
        content[:, j] = reg.fit(F_train, content_train[:, j]).predict(F_test)
    defects = np.zeros((len(F_test), defects_train.shape[1]))
    for j in range(defects_train.shape[1]):
        y = defects_train[:, j].astype(int)
        if y.min() == y.max():
            defects[:, j] = float(y[0])
            continue
        clf = XGBClassifier(n_estimators=n_estimators, max_depth=4, learning_rate=0.05, subsample=0.8, tree_method="hist", n_jobs=1, random_state=seed)
        defects[:, j] = clf.fit(F_train, y).predict_proba(F_test)[:, 1]
    return np.clip(content, 0, 1), defects
