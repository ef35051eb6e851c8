"""HTTP: the Starlette app and its routes (GraphQL endpoint, uploads, downloads, health)."""
