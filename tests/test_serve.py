"""trainwell.serve: the HTTP app (in process, through Starlette's TestClient) and `trainwell serve` (a real
uvicorn subprocess on 127.0.0.1): answers equal to predict_csv / model.predict, a 4xx naming row and column
for every client mistake, micro-batching, metadata, SIGTERM with a request in flight, and a bounded soak."""

import asyncio
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
with warnings.catch_warnings():  # starlette asks for `httpx2`, which the test set-up does not install
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from trainwell._errors import ConfigError, ModelFileError  # noqa: E402
from trainwell.datasets import path as dataset_path  # noqa: E402
from trainwell.layers import Dense, Input  # noqa: E402
from trainwell.models import Sequential  # noqa: E402
from trainwell.pipeline import predict_csv, train_csv  # noqa: E402
from trainwell.serve import create_app  # noqa: E402
from trainwell.serve.batching import MicroBatcher  # noqa: E402
from trainwell.serve.inputs import RequestError  # noqa: E402
from trainwell.utils import set_random_seed  # noqa: E402

WAGES_COLUMNS = ["union", "education_yrs", "experience_yrs", "age", "female", "marr", "south",
                 "manufacturing", "construction"]


# ----------------------------------------------------------------------------- builders


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Three small model files: wages (regression on a table), a table classifier with a category
    column and missing values, and a plain array classifier."""
    folder = tmp_path_factory.mktemp("serve")
    files = {"folder": folder}
    run = train_csv(dataset_path("wages"), "wage_per_hour", layers=(8,), epochs=3, diagnostics="off")
    files["wages"] = folder / "wages.tw"
    run.model.save(files["wages"])
    rng = np.random.default_rng(0)
    n = 200
    table = pd.DataFrame({"size": rng.normal(10, 3, n).round(2),
                          "color": rng.choice(["red", "green", "blue"], n),
                          "weight": rng.normal(50, 10, n).round(1)})
    table.loc[::17, "weight"] = np.nan
    table["kind"] = np.where(table["size"] + (table["color"] == "red") * 3 > 11, "big", "small")
    table.to_csv(folder / "shapes.csv", index=False)
    run = train_csv(folder / "shapes.csv", "kind", layers=(8,), epochs=3, diagnostics="off")
    files["shapes"] = folder / "shapes.tw"
    run.model.save(files["shapes"])
    set_random_seed(0)
    model = Sequential([Input(shape=(4,)), Dense(8, activation="relu"), Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(rng.normal(size=(64, 4)).astype("float32"), rng.integers(0, 3, 64), epochs=1, verbose=0,
              diagnostics="off")
    files["array"] = folder / "array.tw"
    model.save(files["array"])
    return files


@pytest.fixture(scope="module")
def wages_rows():
    frame = pd.read_csv(dataset_path("wages")).drop(columns="wage_per_hour")
    return frame.head(25)


def client_for(path, **options):
    return TestClient(create_app(path, **options), raise_server_exceptions=True)


def post_json(client, payload):
    return post_raw(client, json.dumps(payload).encode())


def post_raw(client, body: bytes, content_type="application/json"):
    return client.post("/predict", content=body, headers={"content-type": content_type})


def problem_cells(response) -> list:
    return [(p["row"], p["column"]) for p in response.json()["problems"]]


# ----------------------------------------------------------------------------- good requests


def test_rows_give_predict_csvs_numbers_in_every_request_form(models, wages_rows, tmp_path):
    wages_rows.to_csv(tmp_path / "rows.csv", index=False)
    expected = predict_csv(models["wages"], tmp_path / "rows.csv")["predicted_wage_per_hour"].to_numpy()
    with client_for(models["wages"]) as client:
        records = post_json(client, wages_rows.to_dict(orient="records"))
        split = post_json(client, {"columns": list(wages_rows.columns),
                                   "data": wages_rows.to_numpy().tolist()})
        csv = post_raw(client, wages_rows.to_csv(index=False).encode(), "text/csv; charset=utf-8")
        shuffled = post_json(client, [dict(reversed(list(row.items())))
                                      for row in wages_rows.to_dict(orient="records")])
    for response in (records, split, csv, shuffled):
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["warnings"] == []
        np.testing.assert_allclose(answer["predictions"], expected, rtol=1e-6, atol=1e-6)


def test_classifier_answers_labels_probabilities_and_classes_like_predict_csv(models, tmp_path):
    rows = pd.read_csv(models["folder"] / "shapes.csv").drop(columns="kind").head(12)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    expected = predict_csv(models["shapes"], tmp_path / "rows.csv")
    payload = json.loads(rows.to_json(orient="records"))  # NaN weights become null
    with client_for(models["shapes"]) as client:
        answer = post_json(client, payload).json()
    assert answer["classes"] == ["big", "small"]
    assert answer["predictions"] == expected["predicted_kind"].tolist()
    np.testing.assert_allclose(answer["probabilities"], expected[["probability_big", "probability_small"]],
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.sum(answer["probabilities"], axis=1), 1.0, rtol=1e-5)


def test_unseen_categories_and_unexpected_missing_values_are_warnings_as_in_predict_csv(models, tmp_path):
    rows = pd.DataFrame({"size": [9.0, 12.0], "color": ["purple", "red"], "weight": [50.0, None]})
    rows.to_csv(tmp_path / "rows.csv", index=False)
    with pytest.warns(UserWarning, match="not seen in training"):
        expected = predict_csv(models["shapes"], tmp_path / "rows.csv")
    with client_for(models["shapes"]) as client:
        answer = post_json(client, [{"size": 9.0, "color": "purple", "weight": 50.0},
                                    {"size": 12.0, "color": "red", "weight": None}])
    assert answer.status_code == 200
    warned = answer.json()["warnings"]
    assert any("'color'" in w and "not seen in training" in w and "'purple'" in w for w in warned)
    probabilities = expected[["probability_big", "probability_small"]]
    np.testing.assert_allclose(answer.json()["probabilities"], probabilities, rtol=1e-6, atol=1e-7)


def test_numeric_text_is_read_as_in_a_csv_and_the_target_column_is_ignored(models, wages_rows):
    row = wages_rows.iloc[0].to_dict()
    texts = {name: str(value) for name, value in row.items()}
    with client_for(models["wages"]) as client:
        plain = post_json(client, [row]).json()["predictions"]
        as_text = post_json(client, [texts]).json()["predictions"]
        with_target = post_json(client, [{**row, "wage_per_hour": 7.5}])
    assert as_text == plain
    assert with_target.status_code == 200 and with_target.json()["predictions"] == plain


def test_extra_columns_can_be_ignored_with_a_warning(models, wages_rows):
    row = {**wages_rows.iloc[0].to_dict(), "employee_id": 17}
    with client_for(models["wages"], extra_columns="ignore") as client:
        answer = post_json(client, [row])
    assert answer.status_code == 200
    assert "employee_id" in answer.json()["warnings"][0]


def test_array_model_takes_inputs_and_answers_classes_and_probabilities(models):
    from trainwell.models import load_model

    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    expected = load_model(models["array"]).predict(x, verbose=0)
    with client_for(models["array"]) as client:
        answer = post_json(client, {"inputs": x.tolist()}).json()
        ints = post_json(client, {"inputs": [[1, 2, 3, 4]]})
    np.testing.assert_allclose(answer["probabilities"], expected, rtol=1e-6, atol=1e-7)
    assert answer["predictions"] == expected.argmax(axis=1).tolist()
    assert ints.status_code == 200


# ----------------------------------------------------------------------------- client mistakes


@pytest.mark.parametrize("body, code, fragment", [
    (b"", "empty_body", "empty"),
    (b"   \n", "empty_body", "empty"),
    (b'[{"union": 1,', "malformed_json", "line 1, column"),
    (b"\xff\xfe[]", "not_utf8", "UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "malformed_json", "nested too deeply"),
    (b"42", "wrong_format", "list of rows"),
    (b'{"age": 3}', "wrong_format", "One row is a list of one object"),
    (b'{"inputs": [[1, 2]]}', "wrong_format", "trained on arrays"),
    (b"[]", "no_rows", "no rows"),
    (b'{"columns": ["age"], "data": []}', "no_rows", "no rows"),
    (b'{"columns": ["age", "age"], "data": [[1, 2]]}', "wrong_format", "distinct"),
    (b'{"columns": ["age"], "data": [[1]], "index": [0]}', "wrong_format", "nothing else"),
])
def test_malformed_bodies_are_400s(models, body, code, fragment):
    with client_for(models["wages"]) as client:
        response = post_raw(client, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == code
    assert fragment in response.json()["message"]


def test_missing_and_unknown_columns_are_422s_naming_row_and_column(models, wages_rows):
    rows = wages_rows.head(3).to_dict(orient="records")
    del rows[1]["age"]
    rows[2]["agee"] = 30
    with client_for(models["wages"]) as client:
        records = post_json(client, rows)
        split = post_json(client, {"columns": WAGES_COLUMNS[1:] + ["unoin"], "data": [[0] * 9, [0] * 8]})
        csv = post_raw(client, b"union,age\n1,2\n", "text/csv")
    assert records.status_code == 422 and records.json()["error"] == "wrong_columns"
    assert problem_cells(records) == [(1, "age"), (2, "agee")]
    assert "did you mean 'age'" in records.json()["problems"][1]["message"]
    assert split.status_code == 422
    assert (None, "union") in problem_cells(split) and (None, "unoin") in problem_cells(split)
    assert "is 'unoin' a misspelling" in split.json()["message"]
    assert (1, None) in problem_cells(split)  # 8 values for 9 columns
    assert csv.status_code == 422 and (None, "education_yrs") in problem_cells(csv)


@pytest.mark.parametrize("value, fragment", [
    ('"abc"', "expected a number, received 'abc' (text)"),
    ("true", "received true (true/false)"),
    ("[1, 2]", "received a list"),
    ('{"a": 1}', "received an object"),
    ("1e999", "non-finite number inf"),
    ('"inf"', "non-finite number 'inf'"),
])
def test_wrong_types_and_non_finite_numbers_are_422s_naming_cells(models, wages_rows, value, fragment):
    rows = wages_rows.head(4).to_dict(orient="records")
    rows[3]["age"] = "VALUE"
    with client_for(models["wages"]) as client:
        response = post_raw(client, json.dumps(rows).replace('"VALUE"', value).encode())
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_values"
    assert problem_cells(response) == [(3, "age")]
    assert fragment in response.json()["problems"][0]["message"]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_json_nan_and_infinity_literals_are_422s(models, literal):
    body = b'{"inputs": [[1, 2, 3, 4], [1, 2, ' + literal + b', 4]]}'
    with client_for(models["array"]) as client:
        response = post_raw(client, body)
    with client_for(models["shapes"]) as client:
        table = post_raw(client, b'[{"size": 1, "color": ' + literal + b', "weight": 2}]')
    assert response.status_code == 422 and problem_cells(response) == [(1, 2)]
    assert "non-finite number" in response.json()["message"]
    assert table.status_code == 422 and problem_cells(table) == [(0, "color")]


def test_csv_cells_are_checked_by_row_and_column(models):
    with client_for(models["wages"]) as client:
        text = post_raw(client, ("{}\n{}\n{}\n".format(",".join(WAGES_COLUMNS), ",".join(["1"] * 9),
                                                      ",".join(["1"] * 8 + ["x"]))).encode(), "text/csv")
        ragged = post_raw(client, b"union,age\n1,2,3,4\n", "text/csv")
    assert text.status_code == 422 and problem_cells(text) == [(1, "construction")]
    assert ragged.status_code in (400, 422)


def test_csv_category_column_read_as_numbers_is_still_a_category(models):
    with client_for(models["shapes"]) as client:
        response = post_raw(client, b"size,color,weight\n9.5,7,50\n12,8,\n", "text/csv")
    assert response.status_code == 200, response.text
    assert any("'color'" in w and "not seen in training" in w for w in response.json()["warnings"])


def test_array_inputs_of_the_wrong_shape_or_type_are_422s(models):
    with client_for(models["array"]) as client:
        rows = [[1, 2, 3, 4], [1, 2, 3], "row", [1, "2", 3, None], [1, 2, 3, 1e39]]
        response = post_json(client, {"inputs": rows})
        envelope = post_json(client, {"inputs": [[1, 2, 3, 4]], "extra": 1})
        table = post_json(client, [{"a": 1}])
    assert response.status_code == 422
    assert problem_cells(response) == [(1, None), (2, None), (3, 1), (3, 3)]
    assert envelope.status_code == 400 and "keys ['extra', 'inputs']" in envelope.json()["message"]
    assert table.status_code == 400 and '{"inputs"' in table.json()["message"]


def test_body_and_row_limits_are_413s(models, wages_rows):
    rows = wages_rows.to_dict(orient="records")
    body = json.dumps(rows).encode()
    with client_for(models["wages"], max_body_bytes=len(body) - 1, max_rows=10) as client:
        declared = post_raw(client, body)
        streamed = client.post("/predict", content=iter([body[:1000], body[1000:]]),
                               headers={"content-type": "application/json"})  # chunked: no Content-Length
        many = post_json(client, rows[:11])
        csv = post_raw(client, wages_rows.head(11).to_csv(index=False).encode(), "text/csv")
        fine = post_json(client, rows[:10])
    assert declared.status_code == 413 and declared.json()["error"] == "body_too_large"
    assert streamed.status_code == 413 and "more than" in streamed.json()["message"]
    assert many.status_code == 413 and "at most 10" in many.json()["message"]
    assert csv.status_code == 413
    assert fine.status_code == 200


def test_unsupported_content_types_are_415s_with_the_fix(models):
    with client_for(models["wages"]) as client:
        form = post_raw(client, b"a=1", "application/x-www-form-urlencoded")
    with client_for(models["array"]) as client:
        csv = post_raw(client, b"a,b\n1,2\n", "text/csv")
    assert form.status_code == 415 and "Content-Type: application/json" in form.json()["message"]
    assert csv.status_code == 415 and "inputs" in csv.json()["message"]


def test_unknown_paths_and_methods_answer_json(models):
    with client_for(models["wages"]) as client:
        missing, method = client.get("/nothing"), client.get("/predict")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert method.status_code == 405 and method.json()["error"] == "method_not_allowed"


# ----------------------------------------------------------------------------- metadata, OpenAPI, settings


def test_health_metadata_and_openapi_describe_the_model(models):
    with client_for(models["shapes"]) as client:
        health = client.get("/health").json()
        meta = client.get("/metadata").json()
        spec = client.get("/openapi.json").json()
        docs = client.get("/docs")
    assert health["status"] == "ok" and health["model"] == "shapes.tw"
    assert meta["model"]["kind"] == "table" and meta["model"]["task"] == "classification"
    columns = {c["name"]: c for c in meta["input"]["columns"]}
    assert columns["color"]["categories"] == ["blue", "green", "red"]
    assert columns["weight"]["missing_seen_in_training"] is True
    assert meta["outputs"]["probabilities"] == ["probability_big", "probability_small"]
    assert "Preprocessing: target 'kind'" in meta["summary"]
    assert set(meta["versions"]) >= {"trainwell", "torch", "fastapi", "uvicorn", "file"}
    assert meta["limits"]["max_rows"] == 10_000
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "text/csv"}
    assert set(body["application/json"]["example"][0]) == {"size", "color", "weight"}
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_openapi_example_is_a_valid_request(models):
    for name in ("wages", "shapes", "array"):
        with client_for(models[name]) as client:
            example = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]
            response = post_json(client, example["content"]["application/json"]["example"])
            assert response.status_code == 200, (name, response.text)


@pytest.mark.parametrize("option, value", [("max_rows", 0), ("max_body_bytes", -1), ("batch_wait_ms", 5000),
                                           ("extra_columns", "drop"), ("max_batch_rows", 2.5)])
def test_bad_settings_are_config_errors(models, option, value):
    with pytest.raises(ConfigError, match=option):
        create_app(models["wages"], **{option: value})


def test_without_the_serve_extra_create_app_says_what_to_install(models, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # what an absent package looks like to import
    with pytest.raises(ConfigError, match=r"pip install 'trainwell\[serve\]'"):
        create_app(models["wages"])


def test_a_bad_model_file_fails_at_create_app(tmp_path):
    (tmp_path / "bad.tw").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="not a trainwell model file"):
        create_app(tmp_path / "bad.tw")


# ----------------------------------------------------------------------------- micro-batching


def test_concurrent_requests_share_batches_and_keep_their_own_answers(models, wages_rows):
    app = create_app(models["wages"], batch_wait_ms=50)
    rows = wages_rows.to_dict(orient="records")

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            singles = [(await client.post("/predict", json=[row])).json()["predictions"][0]
                       for row in rows[:3]]
            batches_before = app.state.batcher.batches
            answers = await asyncio.gather(*[client.post("/predict", json=[row]) for row in rows])
            batches = app.state.batcher.batches - batches_before
        await app.state.batcher.stop()
        return singles, [a.json()["predictions"][0] for a in answers], batches

    singles, together, batches = asyncio.run(main())
    assert batches < len(rows) // 2  # 25 requests, a 50 ms window: a few batches, not 25
    np.testing.assert_allclose(together[:3], singles, rtol=1e-6)
    alone = create_app(models["wages"], batch_wait_ms=0)
    with TestClient(alone) as client:
        expected = [post_json(client, [row]).json()["predictions"][0] for row in rows]
    np.testing.assert_allclose(together, expected, rtol=1e-6, atol=1e-6)


def test_a_batch_keeps_each_requests_warnings_and_errors_to_itself(models):
    app = create_app(models["shapes"], batch_wait_ms=200)
    good = {"size": 9.0, "color": "red", "weight": 50.0}
    bodies = [[good], [{**good, "color": "purple"}], [good, {**good, "size": 14.5}], [{**good, "size": "x"}]]

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            alone = [await client.post("/predict", json=body) for body in bodies]
            together = await asyncio.gather(*[client.post("/predict", json=body) for body in bodies])
        await app.state.batcher.stop()
        return alone, together

    alone, together = asyncio.run(main())
    assert [r.status_code for r in together] == [200, 200, 200, 422]
    assert [len(r.json()["warnings"]) for r in together[:3]] == [0, 1, 0]
    for one, many in zip(alone[:3], together[:3]):
        np.testing.assert_allclose(many.json()["probabilities"], one.json()["probabilities"], rtol=1e-6)


def test_batcher_splits_at_max_rows_refuses_when_full_and_passes_errors():
    seen = []

    def run_batch(items):
        seen.append(sum(map(len, items)))
        if any(np.any(x < 0) for x in items):
            raise ArithmeticError("negative input")
        return [x * 2 if x[0, 0] != 3 else RequestError(422, "three", "no threes") for x in items]

    async def main():
        batcher = MicroBatcher(run_batch, max_rows=4, max_wait_s=0.05, max_pending=6)
        parts = [np.full((n, 1), i, dtype=np.float32) for i, n in enumerate([1, 2, 3, 1, 5])]
        outs = await asyncio.gather(*[batcher.submit(x) for x in parts], return_exceptions=True)
        full = await asyncio.gather(*[batcher.submit(np.ones((1, 1))) for _ in range(7)],
                                    return_exceptions=True)
        failed = await asyncio.gather(batcher.submit(-np.ones((1, 1))), return_exceptions=True)
        await batcher.stop()
        return parts, outs, full, failed

    parts, outs, full, failed = asyncio.run(main())
    for x, out in zip(parts, outs):
        if x[0, 0] == 3:  # one item's own error reaches that request only
            assert isinstance(out, RequestError) and out.status == 422
        else:
            np.testing.assert_array_equal(out, x * 2)
    assert seen[:3] == [3, 4, 5]  # 1+2 (the 3 would pass 4), 3+1, then the 5-row request alone
    refused = [r for r in full if isinstance(r, RequestError)]
    assert len(refused) == 1 and refused[0].status == 503
    assert isinstance(failed[0], ArithmeticError)


# ----------------------------------------------------------------------------- the command, in a subprocess


class ServerProcess:
    """`trainwell serve` in a subprocess; its stderr lines are collected by a thread."""

    def __init__(self, *args, ready=True):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "trainwell.cli", "serve", *map(str, args)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: queue.Queue = queue.Queue()
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.port = None
        if ready:
            self.port = int(self.wait_for("serving ").split("http://127.0.0.1:")[1].split()[0])
            self.wait_for("Application startup complete")

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.output.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} from the server; output: {''.join(self.output)}")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:"))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=10)
        self.proc.stdout.close()
        return self.proc.returncode


def test_cli_serves_and_sigterm_lets_a_request_in_flight_finish(models, wages_rows):
    server = ServerProcess(models["wages"], "--port", 0, "--no-access-log")
    try:
        row = wages_rows.iloc[:2].to_dict(orient="records")
        expected = httpx.post(server.url("/predict"), json=row, timeout=30).json()["predictions"]
        body = json.dumps(row).encode()
        head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
            conn.sendall(head + body[:10])  # the request has started; the rest of its body is still to come
            time.sleep(0.5)
            server.proc.send_signal(signal.SIGTERM)
            server.wait_for("Shutting down")
            time.sleep(0.5)
            assert server.proc.poll() is None  # waiting for the request in flight
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", server.port), timeout=5).close()  # no new connections
            conn.sendall(body[10:])
            reply = b""
            while chunk := conn.recv(65536):
                reply += chunk
        status, _, payload = reply.partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 200")
        assert json.loads(payload)["predictions"] == expected
        assert server.proc.wait(timeout=30) == 0
    finally:
        server.stop()


def test_cli_with_two_workers_answers_and_stops(models):
    server = ServerProcess(models["array"], "--port", 0, "--workers", 2, "--no-access-log")
    try:
        for _ in range(4):
            response = httpx.post(server.url("/predict"), json={"inputs": [[0, 1, 2, 3]]}, timeout=30)
            assert response.status_code == 200
        assert server.stop() == 0
    finally:
        server.stop()


def test_cli_stops_with_one_line_for_a_bad_model_file_or_a_taken_port(models, tmp_path):
    (tmp_path / "bad.tw").write_bytes(b"TRAINWELL\x00 broken")
    bad = subprocess.run([sys.executable, "-m", "trainwell.cli", "serve", str(tmp_path / "bad.tw")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("trainwell: error: ")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = subprocess.run([sys.executable, "-m", "trainwell.cli", "serve", str(models["array"]),
                               "--port", str(port)], capture_output=True, text=True, timeout=120)
    assert busy.returncode == 1
    assert busy.stderr.strip().splitlines() == [busy.stderr.strip()]
    assert f"cannot listen on 127.0.0.1:{port}" in busy.stderr


# ----------------------------------------------------------------------------- soak


SOAK_SECONDS = float(os.environ.get("TRAINWELL_SOAK_SECONDS", "60"))
SOAK_RSS_GROWTH_MIB = 25  # the stated bound on memory growth after the warm-up


@pytest.mark.slow
@pytest.mark.timeout(SOAK_SECONDS + 240)
def test_soak_mixed_good_and_bad_requests(models, wages_rows):
    """SOAK_SECONDS of 8 clients sending good requests (1-25 rows, JSON and CSV) and bad ones (each kind
    of mistake): every good answer is a 200 with the right numbers, every bad one its 4xx, nothing is a
    5xx, the server's memory grows by less than SOAK_RSS_GROWTH_MIB after a warm-up, and SIGTERM stops
    it cleanly."""
    rows = wages_rows.to_dict(orient="records")
    server = ServerProcess(models["wages"], "--port", 0, "--no-access-log", "--max-rows", 100)
    try:
        good = []
        for n in (1, 3, 25):
            expected = httpx.post(server.url("/predict"), json=rows[:n], timeout=30).json()["predictions"]
            good.append(("application/json", json.dumps(rows[:n]).encode(), 200, expected))
            good.append(("text/csv", wages_rows.head(n).to_csv(index=False).encode(), 200, expected))
        bad = [("application/json", b"", 400), ("application/json", b"[{", 400), ("text/plain", b"x", 415),
               ("application/json", json.dumps([{**rows[0], "age": "old"}]).encode(), 422),
               ("application/json", json.dumps([{"age": 3}]).encode(), 422),
               ("application/json", b'[{"age": NaN}]', 422),
               ("application/json", json.dumps(rows * 5).encode(), 413)]
        cases = [*good, *[(*case, None) for case in bad]]
        counts = {"good": 0, "bad": 0}
        failures = []

        async def client(index: int, until: float):
            async with httpx.AsyncClient(base_url=server.url(""), timeout=30) as http:
                i = index
                while time.monotonic() < until:
                    kind, body, status, expected = cases[i % len(cases)]
                    i += 1
                    response = await http.post("/predict", content=body, headers={"content-type": kind})
                    if response.status_code != status:
                        failures.append((kind, body[:60], response.status_code, response.text[:200]))
                    elif expected is not None:
                        counts["good"] += 1
                        # batched with other requests, a row may differ in the last float32 bits
                        if not np.allclose(response.json()["predictions"], expected, rtol=1e-6, atol=1e-6):
                            failures.append(("wrong numbers", body[:60]))
                    else:
                        counts["bad"] += 1

        async def run(seconds: float):
            until = time.monotonic() + seconds
            await asyncio.gather(*[client(i, until) for i in range(8)])

        warm_up = min(10.0, SOAK_SECONDS / 4)
        asyncio.run(run(warm_up))
        rss_start = server.rss_kib()
        asyncio.run(run(SOAK_SECONDS - warm_up))
        rss_end = server.rss_kib()
        print(f"soak: {counts['good']} good and {counts['bad']} bad requests in {SOAK_SECONDS:.0f} s; "
              f"RSS {rss_start / 1024:.1f} -> {rss_end / 1024:.1f} MiB")
        assert failures == []
        assert counts["good"] > 100 and counts["bad"] > 100
        assert (rss_end - rss_start) / 1024 < SOAK_RSS_GROWTH_MIB
        assert server.stop() == 0
    finally:
        server.stop()
