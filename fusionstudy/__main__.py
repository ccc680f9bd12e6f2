"""``python -m fusionstudy`` is the ``fusionstudy`` command."""
from fusionstudy.cli import main

main()
