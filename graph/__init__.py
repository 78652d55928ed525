"""Everything that talks to Neo4j: provisioning, schema, batched writes, snapshot export,
embedding write-back and the Cypher-plus-vector query layer. The only package importing ``neo4j``.
"""
