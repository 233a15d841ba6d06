"""Small programs the workloads run as children (standard library only)."""
