"""The configuration document: schema, loading, revisions and applying them."""
