"""Loads against the real Neo4j: schema, the ml-latest-small counts, upsert idempotence, replace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from graph.connection import read
from graph.datasets import active_generation, drop_dataset, list_datasets
from graph.load import LoadOptions, load_frames
from graph.schema import DATA_LABELS, describe_schema, ensure_schema
from graph.stats import dataset_counts, graph_stats
from loaders.csvfile import read_csv_dataset
from loaders.movielens import BUNDLED_DIR, read_movielens
from tests.integration.loaders_data import write_csv_dataset

GENRES = "MATCH (d:Dataset {name: $dataset}) MATCH (g:Genre {dataset: d.name, gen: d.gen}) RETURN g.name AS name"
GENERATIONS = "MATCH (n) WHERE n.dataset = $dataset RETURN DISTINCT n.gen AS gen"


def test_schema_creation_is_idempotent(clean_database: Any, neo4j_info: Any) -> None:
    first = ensure_schema(clean_database, neo4j_info.database)
    assert first.created == first.statements  # every constraint and index was new
    second = ensure_schema(clean_database, neo4j_info.database)
    assert second.created == 0
    report = describe_schema(clean_database, neo4j_info.database)
    assert {tuple(c.properties) for c in report.constraints if c.labels == ["User"]} == {("dataset", "gen", "id")}
    assert {c.labels[0] for c in report.constraints} == {"Dataset", *DATA_LABELS}
    assert report.indexes and all(ix.state == "ONLINE" for ix in report.indexes)


@pytest.fixture(scope="module")
def movielens_loaded(neo4j_driver: Any, neo4j_info: Any) -> Any:
    frames = read_movielens(name="it-movielens")
    summary = load_frames(neo4j_driver, frames, LoadOptions(mode="replace", progress=False, database=neo4j_info.database))
    yield summary
    drop_dataset(neo4j_driver, "it-movielens", neo4j_info.database)


def test_movielens_latest_small_counts(movielens_loaded: Any, neo4j_driver: Any, neo4j_info: Any) -> None:
    ratings = pd.read_csv(BUNDLED_DIR / "ratings.csv")
    movies = pd.read_csv(BUNDLED_DIR / "movies.csv")
    tags = pd.read_csv(BUNDLED_DIR / "tags.csv")
    counts = movielens_loaded.counts
    # the numbers GroupLens documents for ml-latest-small, and the same numbers counted on the files
    assert (counts.users, counts.items, counts.interactions, counts.tag_applications) == (610, 9742, 100836, 3683)
    assert counts.users == ratings["userId"].nunique()
    assert counts.items == len(movies)
    assert counts.interactions == len(ratings)
    assert counts.tag_applications == len(tags)
    genres = {r["name"] for r in read(neo4j_driver, GENRES, {"dataset": "it-movielens"}, neo4j_info.database)}
    assert genres == set(movies["genres"].str.split("|").explode())
    assert len(genres) == 20 and "(no genres listed)" in genres
    stats = graph_stats(neo4j_driver, neo4j_info.database, "it-movielens")
    assert stats.datasets[0].counts == counts
    assert stats.nodes["Item"] >= 9742 and stats.relationships["INTERACTED"] >= 100836


def test_item_properties_and_rating_values(movielens_loaded: Any, neo4j_driver: Any, neo4j_info: Any) -> None:
    q = (
        "MATCH (d:Dataset {name: $dataset}) "
        "MATCH (u:User {dataset: d.name, gen: d.gen, id: '1'})-[r:INTERACTED]->(i:Item {dataset: d.name, gen: d.gen, id: '1'}) "
        "RETURN i.title AS title, i.year AS year, r.rating AS rating, r.ts AS ts, r.source AS source, r.split AS split"
    )
    rec = read(neo4j_driver, q, {"dataset": "it-movielens"}, neo4j_info.database)[0]
    ratings = pd.read_csv(BUNDLED_DIR / "ratings.csv")
    row = ratings[(ratings.userId == 1) & (ratings.movieId == 1)].iloc[0]
    assert (rec["title"], rec["year"], rec["source"], rec["split"]) == ("Toy Story (1995)", 1995, "load", None)
    assert rec["rating"] == row["rating"] and rec["ts"] == row["timestamp"]


def _csv_frames(tmp_path: Path, name: str, **kw: Any) -> Any:
    paths = write_csv_dataset(tmp_path, **kw)
    return read_csv_dataset(paths["items"], paths["interactions"], paths["users"], name=name)


def test_upsert_twice_gives_the_same_counts(tmp_path: Path, neo4j_driver: Any, neo4j_info: Any) -> None:
    db = neo4j_info.database
    frames = _csv_frames(tmp_path, "it-upsert")
    drop_dataset(neo4j_driver, "it-upsert", db)
    first = load_frames(neo4j_driver, frames, LoadOptions(mode="upsert", batch_size=50, progress=False, database=db))
    second = load_frames(neo4j_driver, frames, LoadOptions(mode="upsert", batch_size=37, progress=False, database=db))
    assert first.fresh_generation and not second.fresh_generation
    assert first.generation == second.generation
    assert first.counts == second.counts
    assert first.counts.interactions == len(frames.interactions)
    assert first.counts.attributes == {"Genre": 4, "Tag": 0, "Category": 3, "Brand": 5}
    dup = read(
        neo4j_driver,
        "MATCH (u:User {dataset: $d})-[r:INTERACTED]->(i:Item) WITH u, i, count(r) AS n WHERE n > 1 RETURN count(*) AS dups",
        {"d": "it-upsert"},
        db,
    )
    assert dup[0]["dups"] == 0
    drop_dataset(neo4j_driver, "it-upsert", db)


def test_upsert_updates_values_and_adds_rows(tmp_path: Path, neo4j_driver: Any, neo4j_info: Any) -> None:
    db = neo4j_info.database
    drop_dataset(neo4j_driver, "it-upsert2", db)
    frames = _csv_frames(tmp_path / "a", "it-upsert2", n_users=10, n_items=20, per_user=5)
    load_frames(neo4j_driver, frames, LoadOptions(progress=False, database=db))
    more = _csv_frames(tmp_path / "b", "it-upsert2", n_users=12, n_items=20, per_user=5, seed=1)
    summary = load_frames(neo4j_driver, more, LoadOptions(progress=False, database=db))
    assert summary.counts.users == 12
    q = "MATCH (u:User {dataset: $d, gen: $g, id: $u})-[r:INTERACTED]->(i:Item {id: $i}) RETURN r.rating AS rating"
    row = more.interactions.iloc[0]
    got = read(neo4j_driver, q, {"d": "it-upsert2", "g": summary.generation, "u": row["user_id"], "i": row["item_id"]}, db)
    assert got[0]["rating"] == row["rating"]
    drop_dataset(neo4j_driver, "it-upsert2", db)


def test_replace_switches_generation_and_deletes_the_old_one(tmp_path: Path, neo4j_driver: Any, neo4j_info: Any) -> None:
    db = neo4j_info.database
    drop_dataset(neo4j_driver, "it-replace", db)
    old = _csv_frames(tmp_path / "a", "it-replace", n_users=10, n_items=20, per_user=5)
    new = _csv_frames(tmp_path / "b", "it-replace", n_users=7, n_items=15, per_user=4, seed=3)
    s1 = load_frames(neo4j_driver, old, LoadOptions(mode="replace", progress=False, database=db))
    s2 = load_frames(neo4j_driver, new, LoadOptions(mode="replace", progress=False, database=db))
    assert s2.generation > s1.generation and s2.previous_generation == s1.generation
    assert active_generation(neo4j_driver, "it-replace", db) == s2.generation
    assert (s2.counts.users, s2.counts.items, s2.counts.interactions) == (7, 15, 28)
    gens = {r["gen"] for r in read(neo4j_driver, GENERATIONS, {"dataset": "it-replace"}, db)}
    assert gens == {s2.generation}
    info = list_datasets(neo4j_driver, db, "it-replace")[0]
    assert info.garbage == [] and info.loading_gen is None
    assert dataset_counts(neo4j_driver, "it-replace", s1.generation, db).users == 0
    drop_dataset(neo4j_driver, "it-replace", db)
