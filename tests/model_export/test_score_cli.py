"""``cryptopulse score`` on good and bad inputs (CSV and JSONL)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from model_export.cli import RESULT_COLUMNS, app
from model_export.train import TrainResult

pytestmark = [pytest.mark.unit, pytest.mark.slow]
runner = CliRunner()


def _score(*args: str) -> Result:
    return runner.invoke(app, ["score", *args])


def test_csv_good_and_bad_rows(tiny: TrainResult, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    with src.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text"])
        w.writerows(
            [[1, "$BTC to the moon 🚀"], [2, ""], [3, "   "], [4, "x" * 5000], [5, "Shares fell 10%"]]
        )
    out = tmp_path / "out.csv"
    result = _score("--input", str(src), "--output", str(out), "--model", str(tiny.artifact_dir))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == list(RESULT_COLUMNS)
    assert len(rows) == 5
    assert rows[0]["label"] in {"negative", "neutral", "positive"} and rows[0]["coins"] == "bitcoin"
    assert rows[0]["error"] == ""
    assert [r["label"] for r in rows[1:4]] == ["", "", ""]
    assert rows[1]["error"] == "empty text" and "longer than" in rows[3]["error"]
    assert rows[4]["label"] != "" and float(rows[4]["p_negative"]) >= 0


def test_jsonl_with_non_text_and_broken_lines(tiny: TrainResult, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"body": "ETH breaks out"}),
        json.dumps({"body": 12}),
        "{not json",
        json.dumps({"other": "x"}),
        json.dumps({"body": None}),
        json.dumps({"body": "rekt again"}),
    ]
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    result = _score(
        "-i",
        str(src),
        "-o",
        str(out),
        "--text-column",
        "body",
        "--model",
        str(tiny.artifact_dir),
        "--keep-columns",
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6
    assert rows[0]["label"] and rows[0]["coins"] == ["ethereum"] and rows[0]["body"] == "ETH breaks out"
    assert rows[1]["label"] == "" and "not text" in rows[1]["error"]
    assert "invalid JSON" in rows[2]["error"]
    assert "no field" in rows[3]["error"]
    assert "not text" in rows[4]["error"]
    assert rows[5]["label"] and rows[5]["error"] is None
    assert all(r["model_version"] == "tiny-test" for r in rows)


def test_missing_column_exits_non_zero(tiny: TrainResult, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("id,body\n1,hello\n")
    result = _score("-i", str(src), "-o", str(tmp_path / "o.csv"), "--model", str(tiny.artifact_dir))
    assert result.exit_code == 2
    assert "no column 'text'" in result.output


def test_unreadable_input_exits_non_zero(tiny: TrainResult, tmp_path: Path) -> None:
    result = _score(
        "-i", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "o.csv"), "--model", str(tiny.artifact_dir)
    )
    assert result.exit_code == 2 and "does not exist" in result.output
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81text\n")
    result = _score("-i", str(binary), "-o", str(tmp_path / "o.csv"), "--model", str(tiny.artifact_dir))
    assert result.exit_code == 2 and "cannot read" in result.output


def test_unknown_model_exits_non_zero(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("text\nhello\n")
    result = _score("-i", str(src), "-o", str(tmp_path / "o.csv"), "--model", str(tmp_path / "no-model"))
    assert result.exit_code == 2 and "cannot load model" in result.output
    result = _score("-i", str(src), "-o", str(tmp_path / "o.csv"), "--model", "models:/bad uri")
    assert result.exit_code == 2
