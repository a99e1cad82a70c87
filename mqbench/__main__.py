"""``python -m mqbench`` runs the CLI."""
from mqbench.cli import main

main()
