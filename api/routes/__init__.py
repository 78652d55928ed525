"""REST resources, one module each."""
