"""The node as supervised processes: the supervisor, its children's roles, and their channels."""
