"""Erasure of a user (privacy requests): the user, in every generation of a dataset, and all derived from them.

What goes, for every ``(:User {dataset, id})`` of the dataset (every generation: the active one, a
loading one, garbage ones not yet deleted):

- the node, with the properties derived from the user that live on it (user vector, serving list,
  fusion statistics);
- their ``INTERACTED`` relationships (loaded and feedback) and ``TAGGED`` relationships;
- what other nodes derived from them: the materialised co-likes (``CO_LIKED`` counts and weights of
  the pairs of items they liked, the liker counts ``Item.co_likers``, the witness lists naming them)
  are corrected, and the tag counts ``HAS_TAG.count`` of the tags they applied go down.

Each generation is erased in one managed write transaction that first takes the Dataset node's lock
(the lock every feedback write takes) and bumps ``Dataset.like_changes``, so a co-like build counting at
the same time leaves its marker stale instead of blessing counts that still include the user.
Relationships are deleted in fixed-size batches (``LIMIT $batch``) inside that transaction.
"""

from __future__ import annotations

import logging
from typing import Any

import neo4j
from pydantic import BaseModel, Field

from graph.connection import read, translate_error
from graphrec.errors import UnknownUserError

log = logging.getLogger(__name__)

BATCH = 5_000
"""Relationships deleted per statement."""

# Generations in which the user exists (the (dataset, gen) index; erasure is rare, a scan of one
# dataset's users is fine).
Q_USER_GENERATIONS = """
MATCH (u:`User` {dataset: $dataset})
WHERE u.id = $user_id
RETURN collect(DISTINCT u.gen) AS gens
"""

# Lock the Dataset node (feedback writes take the same lock) and make a concurrent co-like build stale.
Q_LOCK_DATASET = """
MATCH (d:`Dataset`) USING SCAN d:`Dataset` WHERE d.name = $dataset
SET d.like_changes = coalesce(d.like_changes, 0) + 1, d.erasures = coalesce(d.erasures, 0) + 1
RETURN d.gen AS active
"""

# Co-likes of the markers of this generation: every stored pair of two items the user likes loses one
# co-liker (pairs left with none go), the items they like lose one liker, and every pair touching those
# items is re-weighted c / sqrt(|L_a| |L_b|) (an item without a stored liker count is counted live,
# without the user).
Q_FIX_CO_LIKES = """
MATCH (cl:`CoLiked` {dataset: $dataset, gen: $gen})
MATCH (u:`User` {dataset: $dataset, gen: $gen, id: $user_id})
WITH cl, u, [(u)-[r:`INTERACTED`]->(i:`Item`) WHERE r.rating IS NULL OR r.rating >= cl.like | i] AS liked
CALL (cl, liked) {
  UNWIND liked AS a
  MATCH (a)-[c:`CO_LIKED`]->(b:`Item`)
  WHERE c.tag = cl.tag AND b IN liked
  SET c.count = c.count - 1
  WITH c WHERE c.count <= 0
  DELETE c
  RETURN count(*) AS emptied
}
CALL (liked) {
  UNWIND liked AS i
  WITH i WHERE i.co_likers IS NOT NULL
  SET i.co_likers = CASE WHEN i.co_likers > 1 THEN i.co_likers - 1 ELSE 0 END
  RETURN count(i) AS items
}
CALL (cl, u, liked) {
  UNWIND liked AS a
  MATCH (a)-[c:`CO_LIKED`]-(:`Item`)
  WHERE c.tag = cl.tag
  WITH DISTINCT c
  WITH c, startNode(c) AS x, endNode(c) AS y
  WITH c, coalesce(x.co_likers, COUNT { MATCH (v:`User`)-[r:`INTERACTED`]->(x) WHERE v <> u AND (r.rating IS NULL OR r.rating >= cl.like) RETURN DISTINCT v }) AS lx,
          coalesce(y.co_likers, COUNT { MATCH (v:`User`)-[r:`INTERACTED`]->(y) WHERE v <> u AND (r.rating IS NULL OR r.rating >= cl.like) RETURN DISTINCT v }) AS ly
  WITH c, CASE WHEN lx * ly > 0 THEN toFloat(c.count) / sqrt(toFloat(lx * ly)) ELSE 0.0 END AS w
  SET c.weight = CASE WHEN w > 1.0 THEN 1.0 ELSE w END
  RETURN count(c) AS reweighted
}
RETURN sum(emptied) AS emptied, sum(items) AS items, sum(reweighted) AS reweighted
"""

# Witness lists naming the user, on any pair of an item they interacted with (any publication).
Q_DROP_WITNESS = """
MATCH (u:`User` {dataset: $dataset, gen: $gen, id: $user_id})-[:`INTERACTED`]->(i:`Item`)-[c:`CO_LIKED`]-(:`Item`)
WHERE $user_id IN coalesce(c.witnesses, [])
WITH DISTINCT c
SET c.witnesses = [w IN c.witnesses WHERE w <> $user_id]
RETURN count(c) AS n
"""

# Tag counts: each application of a tag by the user counted once on the item's HAS_TAG.
Q_DROP_TAG_COUNTS = """
MATCH (u:`User` {dataset: $dataset, gen: $gen, id: $user_id})-[t:`TAGGED`]->(i:`Item`)
WITH i, toLower(trim(t.tag)) AS name, count(*) AS n
MATCH (i)-[h:`HAS_TAG`]->(g:`Tag`)
WHERE g.name = name AND h.count IS NOT NULL
SET h.count = h.count - n
WITH h WHERE h.count <= 0
DELETE h
RETURN count(*) AS n
"""

Q_DELETE_RELS = """
MATCH (u:`User` {dataset: $dataset, gen: $gen, id: $user_id})-[r]-()
WITH r LIMIT $batch
DELETE r
RETURN count(*) AS n
"""

Q_DELETE_USER = """
MATCH (u:`User` {dataset: $dataset, gen: $gen, id: $user_id})
DETACH DELETE u
RETURN count(*) AS n
"""

# The dataset's user / interaction counts of the active generation.
Q_FIX_DATASET_COUNTS = """
MATCH (d:`Dataset` {name: $dataset})
WHERE d.gen = $gen
SET d.users = CASE WHEN d.users IS NULL THEN NULL ELSE d.users - 1 END,
    d.interactions = CASE WHEN d.interactions IS NULL THEN NULL ELSE d.interactions - $interactions END
"""

Q_COUNT_INTERACTIONS = """
MATCH (u:`User` {dataset: $dataset, gen: $gen, id: $user_id})
RETURN COUNT { (u)-[:`INTERACTED`]->() } AS interactions, COUNT { (u)-[:`TAGGED`]->() } AS tags
"""


class ErasureReport(BaseModel):
    """What :func:`forget_user` removed."""

    dataset: str
    user_id: str
    generations: list[int] = Field(description="Generations the user was removed from.")
    interactions: int = Field(0, description="INTERACTED relationships deleted (all generations).")
    tags: int = Field(0, description="TAGGED relationships deleted (all generations).")
    co_like_pairs_reweighted: int = Field(0, description="CO_LIKED relationships re-weighted.")
    co_like_pairs_removed: int = Field(0, description="CO_LIKED relationships left with no co-liker, deleted.")
    witness_lists: int = Field(0, description="CO_LIKED witness lists the user was removed from.")
    tag_counts: int = Field(0, description="HAS_TAG relationships whose count reached 0, deleted.")


def _single(tx: neo4j.ManagedTransaction, query: str, params: dict[str, Any]) -> dict[str, Any]:
    record = tx.run(query, params).single()
    return dict(record) if record is not None else {}


def _erase_generation(tx: neo4j.ManagedTransaction, dataset: str, user_id: str, gen: int, batch: int) -> dict[str, int]:
    p = {"dataset": dataset, "user_id": user_id, "gen": gen}
    _single(tx, Q_LOCK_DATASET, p)
    counts = _single(tx, Q_COUNT_INTERACTIONS, p)
    if not counts:
        return {}
    fix = _single(tx, Q_FIX_CO_LIKES, p)
    witnesses = _single(tx, Q_DROP_WITNESS, p).get("n", 0)
    tags = _single(tx, Q_DROP_TAG_COUNTS, p).get("n", 0)
    _single(tx, Q_FIX_DATASET_COUNTS, {**p, "interactions": counts["interactions"]})
    while _single(tx, Q_DELETE_RELS, {**p, "batch": batch}).get("n", 0):
        pass
    _single(tx, Q_DELETE_USER, p)
    return {"interactions": counts["interactions"], "tags": counts["tags"], "reweighted": fix.get("reweighted") or 0,
            "emptied": fix.get("emptied") or 0, "witnesses": witnesses, "tag_counts": tags}


def forget_user(driver: neo4j.Driver, dataset: str, user_id: str, database: str = "neo4j", batch: int = BATCH) -> ErasureReport:
    """Erase ``user_id`` from every generation of ``dataset`` (see the module docstring).

    Args:
        driver: An open driver (the caller owns it).
        dataset: Dataset name.
        user_id: External user id.
        database: Database name.
        batch: Relationships deleted per statement.

    Raises:
        UnknownUserError: The user is in no generation of the dataset.
    """
    rows = read(driver, Q_USER_GENERATIONS, {"dataset": dataset, "user_id": user_id}, database)
    gens = rows[0]["gens"] if rows else []
    if not gens:
        raise UnknownUserError(f"unknown user {user_id!r} in dataset {dataset!r}")
    report = ErasureReport(dataset=dataset, user_id=user_id, generations=[])
    for gen in sorted(int(g) for g in gens):
        try:
            with driver.session(database=database) as session:
                done = session.execute_write(_erase_generation, dataset, user_id, gen, batch)
        except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError, OSError) as e:
            raise translate_error(e) from e
        if not done:
            continue
        report.generations.append(gen)
        report.interactions += done["interactions"]
        report.tags += done["tags"]
        report.co_like_pairs_reweighted += done["reweighted"]
        report.co_like_pairs_removed += done["emptied"]
        report.witness_lists += done["witnesses"]
        report.tag_counts += done["tag_counts"]
    log.info("erased user %r of dataset %r: %s", user_id, dataset, report.model_dump(exclude={"dataset", "user_id"}))
    return report
