"""Cluster membership, heartbeats and the shared configuration store."""
