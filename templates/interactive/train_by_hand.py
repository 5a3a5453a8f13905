"""Train the model by hand and save it as model.skops: what a notebook would do.

    python train_by_hand.py
    mlcycle release --bump minor

The interactive pattern leaves all of this to you: which rows, which model,
whether it is good enough. mlcycle only ships the file. To let mlcycle train,
evaluate and gate the model instead, see "Moving to the open pattern" in README.md.
"""

from pathlib import Path

import pandas as pd
import skops.io
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).resolve().parent

data = pd.read_csv(HERE / "data" / "train.csv")
X = data.drop(columns=["id", "malignant"])  # the key and the label are not features
y = data["malignant"]

# A quick look at how good the model is, on rows it did not learn from.
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.2, random_state=0, stratify=y
)
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
model.fit(X_train, y_train)
print(f"accuracy on {len(X_test)} held-out rows: {model.score(X_test, y_test):.3f}")

# The model that ships learns from every row.
model.fit(X, y)
skops.io.dump(model, HERE / "model.skops")
print(f"saved {HERE / 'model.skops'}")
