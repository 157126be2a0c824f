"""mysqlsts: a MySQL/MariaDB primary/replica StatefulSet, on Kubernetes or as a local runtime."""

__version__ = "0.1.0"
