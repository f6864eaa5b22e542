"""``python -m escale ...``, and what ``torchrun --nproc_per_node N -m escale train ...`` runs in each process."""

import sys

from escale.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
