"""Real peers for interop tests: podman, containerd's CRI, a registry, each with its own state in tmp.

Each peer is a context manager that starts what it needs and leaves nothing behind when it exits;
`have(...)` says whether the tools are installed (scripts/setup-peers.sh installs them).
"""
