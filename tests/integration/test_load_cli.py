"""The ``graphrec load`` / ``stats`` / ``snapshot`` commands end to end (real Neo4j, in-process CLI)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from api.cli.main import main
from graph.datasets import drop_dataset, list_datasets
from graphrec.settings import get_settings
from tests.integration.loaders_data import write_csv_dataset


@pytest.fixture
def cli_env(neo4j_info: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.setenv("NEO4J_URI", neo4j_info.uri)
    monkeypatch.setenv("NEO4J_USER", neo4j_info.user)
    monkeypatch.setenv("NEO4J_PASSWORD", neo4j_info.password)
    monkeypatch.setenv("NEO4J_DATABASE", neo4j_info.database)
    monkeypatch.setenv("GRAPHREC_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


def test_load_csv_stats_and_snapshot(cli_env: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], neo4j_driver: Any, neo4j_info: Any) -> None:
    drop_dataset(neo4j_driver, "it-cli", neo4j_info.database)
    p = write_csv_dataset(tmp_path / "d", n_users=10, n_items=12, per_user=4)
    args = ["load", "csv", "--items", str(p["items"]), "--interactions", str(p["interactions"]), "--users", str(p["users"]), "--dataset", "it-cli", "--no-progress"]
    code, out, _ = run(args, capsys)
    assert code == 0, out
    assert "interactions" in out and "rows/s" in out and "0 rejected" in out
    code, out, _ = run(["stats", "--json", "--dataset", "it-cli"], capsys)
    stats = json.loads(out)
    assert code == 0 and stats["datasets"][0]["counts"]["interactions"] == 40
    assert stats["nodes"]["Brand"] >= 5 and stats["relationships"]["HAS_BRAND"] >= 12
    code, out, _ = run(["snapshot", "export", "--dataset", "it-cli", "--split", "leave_one_out", "--out", str(tmp_path / "snap")], capsys)
    assert code == 0 and (tmp_path / "snap" / "manifest.json").exists()
    assert json.loads(out[out.index("{") :])["counts"]["test"] == 10
    drop_dataset(neo4j_driver, "it-cli", neo4j_info.database)


def test_too_many_bad_rows_stop_the_load_before_any_write(cli_env: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], neo4j_driver: Any, neo4j_info: Any) -> None:
    drop_dataset(neo4j_driver, "it-cli-bad", neo4j_info.database)
    p = write_csv_dataset(tmp_path / "d", n_users=5, n_items=6, per_user=3)
    with p["interactions"].open("a", encoding="utf-8") as fh:
        fh.write("u1,nope,3,5,train\nu2,i1,9,5,train\n")
    base = ["load", "csv", "--items", str(p["items"]), "--interactions", str(p["interactions"]), "--dataset", "it-cli-bad", "--no-progress"]
    code, _, err = run(base + ["--max-errors", "1"], capsys)
    assert code == 7
    assert "interactions.csv:17: unknown item 'nope'" in err and "interactions.csv:18: rating 9 out of range" in err
    assert "nothing was written" in err
    assert list_datasets(neo4j_driver, neo4j_info.database, "it-cli-bad") == []
    code, out, err = run(base + ["--max-errors", "2", "--report", str(tmp_path / "bad.csv")], capsys)
    assert code == 0 and "2 rejected" in out
    import csv

    with (tmp_path / "bad.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == [["file", "line", "reason"], ["interactions.csv", "17", "unknown item 'nope'"], ["interactions.csv", "18", "rating 9 out of range [0.0, 5.0]"]]
    drop_dataset(neo4j_driver, "it-cli-bad", neo4j_info.database)
