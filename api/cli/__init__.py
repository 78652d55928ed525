"""The ``graphrec`` command line (typer). Only this package reads ``sys.argv``."""
