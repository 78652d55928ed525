"""graphrec's benchmarks: commands that print numbers and write JSON run records (never timed assertions).

Kept out of the product packages, as PyTorch Geometric keeps its ``benchmark/`` folder outside its
package. The ``graphrec`` command finds them as a plugin (:mod:`benchmarks.cli`, entry point group
``graphrec.cli``), so ``graphrec bench ...`` works in a source checkout while the product never imports
this package; an installation without it (the Docker image) simply has no ``bench`` command.
See ``benchmarks/README.md`` for the index of benchmarks, their commands and their latest numbers.
"""
