"""The pod agent: `mysqlsts agent`, the StatefulSet pod's `agent` container (see agent.py)."""
