"""The local runtime: the rendered StatefulSet run as real server processes on this machine."""
