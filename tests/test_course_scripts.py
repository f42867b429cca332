"""Course-style Keras scripts run with only their imports changed.

Each script below is written the way the "Introduction to Deep Learning in Python" course writes
Keras code: read a CSV, specify a Sequential, compile, fit, predict. The test swaps ``keras`` for
``trainwell`` in the import lines, and nothing else, then runs the script in a folder holding the
course's CSV files, and checks what it left behind.
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from trainwell import datasets, set_random_seed

WAGES = """
import pandas as pd
from keras.layers import Dense
from keras.models import Sequential

df = pd.read_csv('hourly_wages.csv')
predictors = df.drop(['wage_per_hour'], axis=1).values
target = df['wage_per_hour'].values
n_cols = predictors.shape[1]

model = Sequential()
model.add(Dense(50, activation='relu', input_shape=(n_cols,)))
model.add(Dense(32, activation='relu'))
model.add(Dense(1))
model.compile(optimizer='adam', loss='mean_squared_error')
print("Loss function: " + model.loss)
model.fit(predictors, target)
"""

TITANIC = """
import pandas as pd
from keras.layers import Dense
from keras.models import Sequential
from keras.utils import to_categorical

df = pd.read_csv('titanic_all_numeric.csv')
predictors = df.drop(['survived'], axis=1).values
target = to_categorical(df.survived)
n_cols = predictors.shape[1]

model = Sequential()
model.add(Dense(32, activation='relu', input_shape=(n_cols,)))
model.add(Dense(2, activation='softmax'))
model.compile(optimizer='sgd', loss='categorical_crossentropy', metrics=['accuracy'])
model.fit(predictors, target)

predictions = model.predict(predictors[-20:])
predicted_prob_true = predictions[:, 1]
print(predicted_prob_true)
"""

SGD_LEARNING_RATES = """
import pandas as pd
from keras.layers import Dense
from keras.models import Sequential
from keras.optimizers import SGD
from keras.utils import to_categorical

df = pd.read_csv('titanic_all_numeric.csv')
predictors = df.drop(['survived'], axis=1).values
target = to_categorical(df.survived)
input_shape = (predictors.shape[1],)

def get_new_model(input_shape=input_shape):
    model = Sequential()
    model.add(Dense(100, activation='relu', input_shape=input_shape))
    model.add(Dense(100, activation='relu'))
    model.add(Dense(2, activation='softmax'))
    return model

lr_to_test = [0.000001, 0.01, 1]
final_losses = {}
for lr in lr_to_test:
    print('\\n\\nTesting model with learning rate: %f\\n' % lr)
    model = get_new_model()
    my_optimizer = SGD(learning_rate=lr)
    model.compile(optimizer=my_optimizer, loss='categorical_crossentropy')
    history = model.fit(predictors, target)
    final_losses[lr] = history.history['loss'][-1]
"""

VALIDATION_AND_EARLY_STOPPING = """
import pandas as pd
from keras.callbacks import EarlyStopping
from keras.layers import Dense
from keras.models import Sequential
from keras.utils import to_categorical

df = pd.read_csv('titanic_all_numeric.csv')
predictors = df.drop(['survived'], axis=1).values
target = to_categorical(df.survived)
n_cols = predictors.shape[1]
input_shape = (n_cols,)

model = Sequential()
model.add(Dense(100, activation='relu', input_shape=input_shape))
model.add(Dense(100, activation='relu'))
model.add(Dense(2, activation='softmax'))
model.compile(optimizer='adam', loss='categorical_crossentropy', metrics=['accuracy'])
hist = model.fit(predictors, target, validation_split=0.3)

early_stopping_monitor = EarlyStopping(patience=2)
model.fit(predictors, target, epochs=30, validation_split=0.3, callbacks=[early_stopping_monitor])
"""

COMPARE_ARCHITECTURES = """
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
import pandas as pd
from keras.callbacks import EarlyStopping
from keras.layers import Dense
from keras.models import Sequential
from keras.utils import to_categorical

df = pd.read_csv('titanic_all_numeric.csv')
predictors = df.drop(['survived'], axis=1).values
target = to_categorical(df.survived)
input_shape = (predictors.shape[1],)
early_stopping_monitor = EarlyStopping(patience=2)

model_1 = Sequential()
model_1.add(Dense(10, activation='relu', input_shape=input_shape))
model_1.add(Dense(10, activation='relu'))
model_1.add(Dense(2, activation='softmax'))
model_1.compile(optimizer='adam', loss='categorical_crossentropy', metrics=['accuracy'])

model_2 = Sequential()
model_2.add(Dense(100, activation='relu', input_shape=input_shape))
model_2.add(Dense(100, activation='relu'))
model_2.add(Dense(2, activation='softmax'))
model_2.compile(optimizer='adam', loss='categorical_crossentropy', metrics=['accuracy'])

model_1_training = model_1.fit(predictors, target, epochs=15, validation_split=0.2,
                               callbacks=[early_stopping_monitor], verbose=False)
model_2_training = model_2.fit(predictors, target, epochs=15, validation_split=0.2,
                               callbacks=[early_stopping_monitor], verbose=False)

plt.plot(model_1_training.history['val_loss'], 'r', model_2_training.history['val_loss'], 'b')
plt.xlabel('Epochs')
plt.ylabel('Validation score')
plt.savefig('validation_loss.png')
plt.close('all')
"""

SAVE_LOAD_PREDICT = """
import pandas as pd
from keras.layers import Dense
from keras.models import Sequential, load_model
from keras.utils import to_categorical

df = pd.read_csv('titanic_all_numeric.csv')
predictors = df.drop(['survived'], axis=1).values
target = to_categorical(df.survived)
pred_data = predictors[-10:]

model = Sequential()
model.add(Dense(32, activation='relu', input_shape=(predictors.shape[1],)))
model.add(Dense(2, activation='softmax'))
model.compile(optimizer='sgd', loss='categorical_crossentropy', metrics=['accuracy'])
model.fit(predictors, target)

model.save('model_file.h5')
my_model = load_model('model_file.h5')
predictions = my_model.predict(pred_data)
probability_true = predictions[:, 1]
my_model.summary()
original = model.predict(pred_data)
"""

MNIST = """
import numpy as np
from keras.layers import Dense
from keras.models import Sequential
from keras.utils import to_categorical

data = np.loadtxt('mnist.csv', delimiter=',')
X = data[:, 1:]
y = to_categorical(data[:, 0])

model = Sequential()
model.add(Dense(50, activation='relu', input_shape=(784,)))
model.add(Dense(50, activation='relu'))
model.add(Dense(10, activation='softmax'))
model.compile(optimizer='adam', loss='categorical_crossentropy', metrics=['accuracy'])
model.fit(X, y, validation_split=0.3)
"""

_IMPORT = re.compile(r"^(from|import) keras\b", flags=re.MULTILINE)


def to_trainwell(source: str) -> str:
    """The script with ``keras`` replaced by ``trainwell`` in its import lines, and only there."""
    converted = _IMPORT.sub(r"\1 trainwell", source)
    changed = [b for a, b in zip(source.splitlines(), converted.splitlines()) if a != b]
    assert changed and all(line.startswith(("from trainwell", "import trainwell")) for line in changed)
    return converted


@pytest.fixture
def course_folder(tmp_path, monkeypatch):
    """A working folder holding the course's three CSV files, as the course's exercises have; the
    global seed is fixed first (the scripts set none), so every threshold below is reproducible."""
    for name in ("wages", "titanic", "mnist"):
        source = datasets.path(name)
        shutil.copyfile(source, tmp_path / source.name)
    monkeypatch.chdir(tmp_path)
    set_random_seed(0)
    return tmp_path


def run(source: str) -> dict:
    namespace = {"__name__": "__course__"}
    exec(compile(to_trainwell(source), "<course script>", "exec"), namespace)
    return namespace


def test_import_rewrite_touches_only_imports():
    assert to_trainwell("from keras.models import Sequential\nx = 'keras'\n") == \
        "from trainwell.models import Sequential\nx = 'keras'\n"


def test_wages_regression_script(course_folder, capsys):
    ns = run(WAGES)
    out = capsys.readouterr().out
    assert "Loss function: mean_squared_error" in out
    assert "Epoch 1/1" in out
    assert ns["model"].count_params() == 9 * 50 + 50 + 50 * 32 + 32 + 33
    # One epoch on unscaled inputs already beats predicting 0 for every wage (loss = mean of y²).
    loss = ns["model"].history.history["loss"][-1]
    assert np.isfinite(loss) and loss < 0.7 * float(np.mean(ns["target"] ** 2))


def test_titanic_classification_script(course_folder, capsys):
    ns = run(TITANIC)
    assert ns["predictions"].shape == (20, 2)
    np.testing.assert_allclose(ns["predictions"].sum(axis=1), 1.0, rtol=1e-5)
    assert np.all((ns["predicted_prob_true"] >= 0) & (ns["predicted_prob_true"] <= 1))
    assert "accuracy: " in capsys.readouterr().out
    history = ns["model"].history.history
    assert np.isfinite(history["loss"][-1]) and history["accuracy"][-1] > 0.55  # chance: 0.5


def test_sgd_learning_rates_script(course_folder, capsys):
    ns = run(SGD_LEARNING_RATES)
    losses = ns["final_losses"]
    assert sorted(losses) == [0.000001, 0.01, 1]
    assert capsys.readouterr().out.count("Testing model with learning rate") == 3
    # The course's lesson: lr=1 blows the loss up by orders of magnitude; the small rates do not.
    assert losses[0.000001] < 5 and losses[0.01] < 5
    assert not losses[1] < 100 * max(losses[0.000001], losses[0.01])  # NaN counts as blown up too


def test_validation_split_and_early_stopping_script(course_folder, capsys):
    ns = run(VALIDATION_AND_EARLY_STOPPING)
    assert set(ns["hist"].history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    history = ns["model"].history.history
    monitor = ns["early_stopping_monitor"]
    assert len(history["val_loss"]) < 30  # it stopped early, patience 2 after the best epoch
    assert monitor.stopped_epoch == monitor.best_epoch + 2 == len(history["val_loss"]) - 1
    assert min(history["val_loss"]) < 0.65 and max(history["val_accuracy"]) > 0.65  # chance: ln 2, 0.5


def test_compare_architectures_script(course_folder):
    ns = run(COMPARE_ARCHITECTURES)
    for history in (ns["model_1_training"], ns["model_2_training"]):
        assert 3 <= len(history.history["val_loss"]) <= 15
        assert min(history.history["val_loss"]) < 0.65  # both learn something (chance: ln 2 = 0.69)
    png = course_folder / "validation_loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_save_load_predict_script(course_folder, capsys):
    ns = run(SAVE_LOAD_PREDICT)
    np.testing.assert_array_equal(ns["predictions"], ns["original"])  # the same weights, bit for bit
    assert ns["probability_true"].shape == (10,)
    assert np.all((ns["probability_true"] >= 0) & (ns["probability_true"] <= 1))
    # model_file.h5 is a Keras HDF5 file: the input shape comes back on the model (Keras keeps it
    # there, as an InputLayer), not as the first layer's input_shape argument.
    def architecture(model):
        config = model.get_config()
        return config["input_shape"], [{k: v for k, v in layer["config"].items() if k != "input_shape"}
                                       for layer in config["layers"]]
    assert architecture(ns["my_model"]) == architecture(ns["model"])
    assert "Total params: 418" in capsys.readouterr().out  # my_model.summary(): 10*32+32 + 32*2+2


def test_mnist_script(course_folder, capsys):
    ns = run(MNIST)
    history = ns["model"].history.history
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history["val_accuracy"][0] > 0.3  # one epoch on unscaled pixels, as in the course (chance: 0.1)
