from amber.cli import entrypoint

entrypoint()
